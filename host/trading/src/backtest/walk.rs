//! Walk-forward: the days cut into windows, each an in-sample part followed by an
//! out-of-sample part. On each in-sample part every candidate setting of the subject's
//! tunables is run and scored; the best (the first of equals) is then run on the
//! out-of-sample part that follows, which it has not seen. Rolling windows slide by the
//! out-of-sample length and keep the in-sample length; anchored windows all start at the
//! first day and grow. The report shows each window's choice and both scores, and the
//! out-of-sample parts chained together, which is the honest figure.
//!
//! Tunables are settings of the subject's `[config]`, each with a range: given in the spec
//! (`params`), or marked in its manifest as `"tune.NAME" = "A..B"`, or in its source by a
//! comment `overseer:tune NAME A..B` (an optional `step S` after it). A range of whole
//! numbers gives whole numbers.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::run::{self, Control, Pass, Stage};
use super::{Failure, Plan, pass_metrics};
use crate::performance::{Metrics, Point};

/// Most candidates one in-sample search may try.
pub const MAX_CANDIDATES: usize = 256;
/// Values a grid takes of a range without a step.
const GRID_POINTS: usize = 10;
/// The largest magnitude a tunable's bound may have (whole numbers stay exact well below
/// 2^53, and a range of them stays countable).
pub const MAX_BOUND: f64 = 1e9;

/// How windows are laid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Windows {
    #[default]
    Rolling,
    Anchored,
}

/// How candidates are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    /// Every combination of each range's values.
    #[default]
    Grid,
    /// `samples` combinations drawn uniformly, from the run's seed.
    Random,
}

/// What a window's run is scored by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    #[default]
    Sharpe,
    TotalReturn,
}

impl Objective {
    fn score(self, metrics: &Metrics) -> f64 {
        match self {
            Objective::Sharpe => metrics.sharpe,
            Objective::TotalReturn => metrics.total_return,
        }
    }
}

/// The values a tunable may take: `from` to `to` inclusive, by `step` when given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: f64,
    pub to: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
}

impl Range {
    /// `A..B`, optionally followed by `step S`.
    pub fn parse(text: &str) -> Option<Range> {
        let mut words = text.split_whitespace();
        let (from, to) = words.next()?.split_once("..")?;
        let step = match (words.next(), words.next()) {
            (Some("step"), Some(step)) => Some(step.parse().ok()?),
            (None, _) => None,
            _ => return None,
        };
        let range = Range {
            from: from.parse().ok()?,
            to: to.parse().ok()?,
            step,
        };
        range.check().ok().map(|()| range)
    }

    fn check(&self) -> Result<(), String> {
        let bounded = |v: f64| v.is_finite() && v.abs() <= MAX_BOUND;
        if !bounded(self.from) || !bounded(self.to) || self.from > self.to {
            return Err(format!(
                "{}..{} is not a range within ±{MAX_BOUND}",
                self.from, self.to
            ));
        }
        if self.step.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            return Err("a step must be a positive number".to_string());
        }
        Ok(())
    }

    fn whole(&self) -> bool {
        self.from.fract() == 0.0
            && self.to.fract() == 0.0
            && self.step.is_none_or(|s| s.fract() == 0.0)
    }

    /// The grid's values.
    fn values(&self) -> Vec<f64> {
        let mut values = Vec::new();
        match self.step {
            Some(step) => {
                let mut k = 0.0;
                while self.from + k * step <= self.to + 1e-9 && values.len() <= MAX_CANDIDATES {
                    values.push(self.from + k * step);
                    k += 1.0;
                }
            }
            None if self.whole() && self.to - self.from < GRID_POINTS as f64 => {
                let count = (self.to - self.from) as usize + 1;
                values.extend((0..count).map(|i| self.from + i as f64));
            }
            None => {
                let span = self.to - self.from;
                for i in 0..GRID_POINTS {
                    let v = self.from + span * i as f64 / (GRID_POINTS - 1) as f64;
                    values.push(if self.whole() { v.round() } else { v });
                }
                values.dedup();
            }
        }
        values
    }

    fn sample(&self, rng: &mut rand::rngs::StdRng) -> f64 {
        if self.whole() {
            // Whole numbers from..=to, each as likely.
            let (from, to) = (self.from as i64, self.to as i64);
            rng.random_range(from..=to) as f64
        } else {
            rng.random_range(self.from..=self.to)
        }
    }
}

/// A setting as `runtime.config` hands it over.
fn setting(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The tunables marked in source text: `overseer:tune NAME A..B [step S]`.
pub fn scan_source(text: &str) -> BTreeMap<String, Range> {
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("overseer:tune") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(range)) = (words.next(), words.next()) else {
            continue;
        };
        let rest: Vec<&str> = words.take(2).collect();
        let text = if rest.first() == Some(&"step") {
            format!("{range} {}", rest.join(" "))
        } else {
            range.to_string()
        };
        if let Some(range) = Range::parse(&text) {
            found.insert(name.to_string(), range);
        }
    }
    found
}

/// The tunables a manifest's `[config]` marks: `"tune.NAME" = "A..B"`.
pub fn manifest_marks(config: &BTreeMap<String, String>) -> BTreeMap<String, Range> {
    config
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("tune.")?;
            Some((name.to_string(), Range::parse(value)?))
        })
        .collect()
}

/// The walk-forward part of a spec. Lengths are in trading days (bars).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalkForward {
    #[serde(default)]
    pub windows: Windows,
    pub in_sample: usize,
    pub out_of_sample: usize,
    /// Ranges of the tunables; when empty, those the subject's manifest and source mark
    /// (the source's over the manifest's).
    #[serde(default)]
    pub params: BTreeMap<String, Range>,
    #[serde(default)]
    pub search: Search,
    /// Candidates a random search draws.
    #[serde(default = "default_samples")]
    pub samples: usize,
    #[serde(default)]
    pub objective: Objective,
}

fn default_samples() -> usize {
    20
}

/// One window of a walk-forward.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = WalkForwardWindow)]
pub struct Window {
    /// The first and last day in-sample.
    #[schema(value_type = Vec<NaiveDate>, min_items = 2, max_items = 2)]
    pub in_sample: (NaiveDate, NaiveDate),
    /// The first and last day out-of-sample.
    #[schema(value_type = Vec<NaiveDate>, min_items = 2, max_items = 2)]
    pub out_of_sample: (NaiveDate, NaiveDate),
    /// The settings chosen in-sample.
    pub params: BTreeMap<String, String>,
    pub in_sample_score: f64,
    pub out_of_sample_score: f64,
    pub candidates: usize,
}

/// What a walk-forward found.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WalkReport {
    pub windows_kind: Windows,
    pub objective: Objective,
    pub windows: Vec<Window>,
    /// The mean of the windows' in-sample scores.
    pub in_sample_score: f64,
    /// The score of the out-of-sample parts chained (the report's metrics are theirs).
    pub out_of_sample_score: f64,
}

/// `[from, to)` index ranges of the in-sample and out-of-sample parts.
type Cut = (std::ops::Range<usize>, std::ops::Range<usize>);

impl WalkForward {
    /// The tunables, checked: the spec's, or (filled in when it gives none) those the
    /// subject's manifest and source mark.
    fn params(&self) -> Result<&BTreeMap<String, Range>, Failure> {
        if self.params.is_empty() {
            return Err(Failure::new(
                "invalid_request",
                "no tunables: give walk_forward.params, or mark them in the agent's source (overseer:tune NAME A..B) or manifest (\"tune.NAME\" = \"A..B\")",
            ));
        }
        for (name, range) in &self.params {
            range
                .check()
                .map_err(|e| Failure::new("invalid_request", format!("{name}: {e}")))?;
        }
        Ok(&self.params)
    }

    /// The candidate settings.
    fn candidates(
        &self,
        params: &BTreeMap<String, Range>,
        seed: u64,
    ) -> Result<Vec<BTreeMap<String, String>>, Failure> {
        let too_many = || {
            Failure::new(
                "invalid_request",
                format!(
                    "more than {MAX_CANDIDATES} candidates: narrow the ranges, give steps, or search at random"
                ),
            )
        };
        match self.search {
            Search::Grid => {
                let mut all = vec![BTreeMap::new()];
                for (name, range) in params {
                    let values = range.values();
                    if all.len() * values.len() > MAX_CANDIDATES {
                        return Err(too_many());
                    }
                    all = all
                        .into_iter()
                        .flat_map(|c| {
                            values.iter().map(move |v| {
                                let mut c = c.clone();
                                c.insert(name.clone(), setting(*v));
                                c
                            })
                        })
                        .collect();
                }
                Ok(all)
            }
            Search::Random => {
                if self.samples == 0 || self.samples > MAX_CANDIDATES {
                    return Err(too_many());
                }
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                Ok((0..self.samples)
                    .map(|_| {
                        params
                            .iter()
                            .map(|(name, range)| (name.clone(), setting(range.sample(&mut rng))))
                            .collect()
                    })
                    .collect())
            }
        }
    }

    /// The windows over `n` days.
    fn cuts(&self, n: usize) -> Result<Vec<Cut>, Failure> {
        if self.in_sample == 0 || self.out_of_sample == 0 {
            return Err(Failure::new(
                "invalid_request",
                "in_sample and out_of_sample are lengths in bars, at least 1",
            ));
        }
        if self.in_sample >= n || self.out_of_sample > n {
            return Err(Failure::new(
                "invalid_request",
                format!(
                    "{n} bars leave no out-of-sample part after an in-sample part of {}",
                    self.in_sample
                ),
            ));
        }
        let mut cuts = Vec::new();
        let mut start = 0;
        // Both lengths are at most `n`: no sum below overflows.
        while start + self.in_sample < n {
            let is_end = start + self.in_sample;
            let oos_end = (is_end + self.out_of_sample).min(n);
            let is_start = match self.windows {
                Windows::Rolling => start,
                Windows::Anchored => 0,
            };
            cuts.push((is_start..is_end, is_end..oos_end));
            start += self.out_of_sample;
        }
        Ok(cuts)
    }

    /// Bars a walk-forward over `n` days runs in all.
    pub(crate) fn total(&self, n: usize, seed: u64) -> Result<u64, Failure> {
        let candidates = self.candidates(self.params()?, seed)?.len();
        let cuts = self.cuts(n)?;
        Ok(cuts
            .iter()
            .map(|(is, oos)| (is.len() * candidates + oos.len()) as u64)
            .sum())
    }
}

/// Run `walk` over `plan`: the chained out-of-sample pass, and the report of the windows.
pub(crate) async fn run(
    walk: &WalkForward,
    plan: &Plan,
    control: &Control,
) -> Result<(Pass, WalkReport), Failure> {
    let candidates = walk.candidates(walk.params()?, plan.spec.seed)?;
    let with = |settings: &BTreeMap<String, String>| -> Vec<Stage> {
        let mut stages = plan.stages.clone();
        stages[0].config.extend(settings.clone());
        stages
    };
    let risk_free = plan.spec.risk_free;
    let mut windows = Vec::new();
    let mut chained: Option<Pass> = None;
    for (is, oos) in walk.cuts(plan.days.len())? {
        let mut best: Option<(f64, &BTreeMap<String, String>)> = None;
        for candidate in &candidates {
            let pass = run::pass(
                &plan.setup,
                &with(candidate),
                &plan.days[is.clone()],
                control,
            )
            .await?;
            let score = walk.objective.score(&pass_metrics(&pass, risk_free));
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, candidate));
            }
        }
        let Some((in_sample_score, chosen)) = best else {
            continue;
        };
        let pass = run::pass(&plan.setup, &with(chosen), &plan.days[oos.clone()], control).await?;
        let out_of_sample_score = walk.objective.score(&pass_metrics(&pass, risk_free));
        windows.push(Window {
            in_sample: (plan.days[is.start].date, plan.days[is.end - 1].date),
            out_of_sample: (plan.days[oos.start].date, plan.days[oos.end - 1].date),
            params: chosen.clone(),
            in_sample_score,
            out_of_sample_score,
            candidates: candidates.len(),
        });
        chained = Some(match chained {
            None => pass,
            Some(before) => chain(before, pass),
        });
    }
    let Some(pass) = chained else {
        return Err(Failure::new("invalid_request", "no window to run"));
    };
    let in_sample_score =
        windows.iter().map(|w| w.in_sample_score).sum::<f64>() / windows.len().max(1) as f64;
    let out_of_sample_score = walk.objective.score(&pass_metrics(&pass, risk_free));
    Ok((
        pass,
        WalkReport {
            windows_kind: walk.windows,
            objective: walk.objective,
            windows,
            in_sample_score,
            out_of_sample_score,
        },
    ))
}

/// `after` appended to `before`: its curve, and the money of its trades, scaled to continue
/// from `before`'s last equity (each window starts from the same cash, so its returns carry
/// over, not its dollars). The trade log keeps each window's own dollars.
fn chain(mut before: Pass, after: Pass) -> Pass {
    let last = before.curve.last().map_or(1.0, |p| p.equity);
    let first = after.curve.first().map_or(1.0, |p| p.equity);
    let scale = if first > 0.0 { last / first } else { 1.0 };
    before.days.extend(after.days);
    before.curve.extend(after.curve.iter().map(|p| Point {
        equity: p.equity * scale,
        gross_exposure: p.gross_exposure * scale,
    }));
    before.cash.extend(after.cash.iter().map(|c| c * scale));
    before.log.extend(after.log);
    before.totals.fees += after.totals.fees * scale;
    before.totals.slippage += after.totals.slippage * scale;
    before.totals.traded += after.totals.traded * scale;
    before
        .totals
        .closed
        .extend(after.totals.closed.iter().map(|pnl| pnl * scale));
    before.llm += after.llm;
    before.decisions += after.decisions;
    before.errors += after.errors;
    if after.last_error.is_some() {
        before.last_error = after.last_error;
    }
    before.logs.extend(after.logs);
    before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_from_marks_and_refuse_nonsense() {
        let text = "let fast = cfg(\"fast\"); // overseer:tune fast 2..20\n// overseer:tune width 0.5..1.5 step 0.25\n// overseer:tune bad 9..3\n";
        let found = scan_source(text);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found["fast"].values(),
            vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0]
        );
        assert_eq!(found["width"].values(), vec![0.5, 0.75, 1.0, 1.25, 1.5]);
        assert!(Range::parse("5..x").is_none());
        assert_eq!(setting(12.0), "12");
        assert_eq!(setting(0.25), "0.25");
    }

    #[test]
    fn rolling_windows_slide_and_anchored_ones_grow() {
        let walk = WalkForward {
            windows: Windows::Rolling,
            in_sample: 4,
            out_of_sample: 2,
            params: BTreeMap::new(),
            search: Search::Grid,
            samples: 20,
            objective: Objective::Sharpe,
        };
        assert_eq!(
            walk.cuts(9).unwrap(),
            vec![(0..4, 4..6), (2..6, 6..8), (4..8, 8..9)]
        );
        let anchored = WalkForward {
            windows: Windows::Anchored,
            ..walk.clone()
        };
        assert_eq!(
            anchored.cuts(9).unwrap(),
            vec![(0..4, 4..6), (0..6, 6..8), (0..8, 8..9)]
        );
        assert_eq!(walk.cuts(4).unwrap_err().code, "invalid_request");
    }

    #[test]
    fn a_random_search_is_the_same_for_the_same_seed() {
        let walk = WalkForward {
            windows: Windows::Rolling,
            in_sample: 4,
            out_of_sample: 2,
            params: BTreeMap::new(),
            search: Search::Random,
            samples: 5,
            objective: Objective::Sharpe,
        };
        let params = BTreeMap::from([("fast".to_string(), Range::parse("2..30").unwrap())]);
        let a = walk.candidates(&params, 7).unwrap();
        assert_eq!(a, walk.candidates(&params, 7).unwrap());
        assert!(a.iter().all(|c| {
            let v: i64 = c["fast"].parse().unwrap();
            (2..=30).contains(&v)
        }));
    }
}
