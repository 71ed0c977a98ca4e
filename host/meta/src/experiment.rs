//! The statistics of A/B experiments: Wilson score intervals for a binary outcome, Welch's
//! t-test for a continuous one, and a sequential stopping rule that keeps the false-positive
//! rate at or below alpha however often the results are looked at.
//!
//! The stopping rule spends alpha evenly over a fixed largest number of looks (a linear
//! alpha-spending function: each of `max_looks` looks tests at `alpha / max_looks`, the
//! Bonferroni bound of the union of the looks' false positives). It is more conservative than
//! O'Brien–Fleming boundaries, which need the correlation of the looks to be computed, and
//! than an SPRT, which needs the effect size fixed in advance; in exchange its guarantee holds
//! for any test statistic, looks at any moments, and unequal arms, with nothing to tune. An
//! experiment stops for a winner at the first look whose test is significant at the look's
//! level, and without one when its looks run out. Fewer than `min_samples` per arm is never
//! a look.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A Wilson score interval for `successes` of `trials` at confidence `1 − alpha` (Wilson
/// 1927; Agresti & Coull 1998): `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`.
/// `None` without trials.
pub fn wilson(successes: u64, trials: u64, alpha: f64) -> Option<(f64, f64)> {
    if trials == 0 || successes > trials {
        return None;
    }
    let z = standard_normal().inverse_cdf(1.0 - alpha / 2.0);
    let n = trials as f64;
    let p = successes as f64 / n;
    let centre = p + z * z / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z * z / n;
    Some((
        ((centre - spread) / denominator).max(0.0),
        ((centre + spread) / denominator).min(1.0),
    ))
}

fn standard_normal() -> Normal {
    Normal::standard()
}

/// The two-sided p-value that two arms' success rates are equal: the pooled two-proportion
/// z-test. 1 when either arm is empty or the pooled rate is 0 or 1.
pub fn two_proportion_p(a: (u64, u64), b: (u64, u64)) -> f64 {
    let ((sa, na), (sb, nb)) = (a, b);
    if na == 0 || nb == 0 {
        return 1.0;
    }
    let pooled = (sa + sb) as f64 / (na + nb) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / na as f64 + 1.0 / nb as f64)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    let z = (sa as f64 / na as f64 - sb as f64 / nb as f64) / se;
    2.0 * (1.0 - standard_normal().cdf(z.abs()))
}

/// The two-sided p-value of Welch's t-test that two samples have equal means (unequal
/// variances; Welch–Satterthwaite degrees of freedom). 1 with fewer than two values in an arm
/// or no variance at all.
pub fn welch_p(a: &[f64], b: &[f64]) -> f64 {
    let moments = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    if a.len() < 2 || b.len() < 2 {
        return 1.0;
    }
    let ((na, ma, va), (nb, mb, vb)) = (moments(a), moments(b));
    let se2 = va / na + vb / nb;
    if se2 <= 0.0 {
        return 1.0;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2.powi(2) / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => 2.0 * (1.0 - dist.cdf(t.abs())),
        Err(_) => 1.0,
    }
}

/// When an experiment may stop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoppingRule {
    /// The false-positive rate allowed over the whole experiment.
    pub alpha: f64,
    /// The most looks; each tests at `alpha / max_looks`.
    pub max_looks: u32,
    /// Fewest outcomes per arm before a look counts.
    pub min_samples: u64,
}

/// What a look decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ExperimentVerdict)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough outcomes yet, or not significant with looks left.
    Continue,
    /// Significant at this look's level: the better arm wins.
    Winner,
    /// The looks ran out without significance: nothing is promoted.
    NoDifference,
}

impl StoppingRule {
    /// The level each look tests at.
    pub fn level(&self) -> f64 {
        self.alpha / f64::from(self.max_looks.max(1))
    }

    /// The verdict of look number `look` (1-based) whose test gave `p`, with `per_arm`
    /// outcomes in the smaller arm. A look before `min_samples` does not count: callers pass
    /// the number of looks that counted.
    pub fn judge(&self, look: u32, p: f64, per_arm: u64) -> Verdict {
        if per_arm < self.min_samples {
            return Verdict::Continue;
        }
        if p < self.level() {
            Verdict::Winner
        } else if look >= self.max_looks {
            Verdict::NoDifference
        } else {
            Verdict::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    #[test]
    fn wilson_and_welch_match_published_values() {
        // Agresti & Coull's example style: 0 of 10 still has an upper bound.
        let (lo, hi) = wilson(0, 10, 0.05).unwrap();
        assert!(lo.abs() < 1e-12 && (hi - 0.2775).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(50, 100, 0.05).unwrap();
        assert!(
            (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(1, 0, 0.05), None);
        // Identical samples: no evidence of a difference.
        assert!((welch_p(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        let p = welch_p(&[1.0, 2.0, 3.0, 4.0], &[10.0, 11.0, 12.0, 13.0]);
        assert!(p < 1e-4, "{p}");
        assert!(two_proportion_p((90, 100), (50, 100)) < 1e-6);
        assert!((two_proportion_p((5, 10), (5, 10)) - 1.0).abs() < 1e-12);
    }

    /// Run one experiment of two arms with success rates `pa` and `pb`, looking after every
    /// `batch` outcomes per arm; its verdict.
    fn experiment(rng: &mut StdRng, rule: &StoppingRule, pa: f64, pb: f64, batch: u64) -> Verdict {
        let (mut a, mut b) = ((0u64, 0u64), (0u64, 0u64));
        let mut look = 0;
        loop {
            for _ in 0..batch {
                a.0 += u64::from(rng.random_bool(pa));
                a.1 += 1;
                b.0 += u64::from(rng.random_bool(pb));
                b.1 += 1;
            }
            if a.1 < rule.min_samples {
                continue;
            }
            look += 1;
            match rule.judge(look, two_proportion_p(a, b), a.1.min(b.1)) {
                Verdict::Continue => {}
                verdict => return verdict,
            }
        }
    }

    /// Over 1,000 A/A experiments (seeded), the rule declares a winner no more often than
    /// alpha; over the same B-better experiments it finds the winner most of the time.
    #[test]
    fn the_stopping_rule_keeps_its_false_positive_rate_under_alpha() {
        let rule = StoppingRule {
            alpha: 0.05,
            max_looks: 10,
            min_samples: 50,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let runs = 1000;
        let false_positives = (0..runs)
            .filter(|_| experiment(&mut rng, &rule, 0.3, 0.3, 50) == Verdict::Winner)
            .count();
        let rate = false_positives as f64 / runs as f64;
        println!(
            "A/A: {false_positives} winners in {runs} experiments: a false-positive rate of {rate:.3} (alpha {})",
            rule.alpha
        );
        assert!(rate <= rule.alpha, "{rate}");
        let found = (0..200)
            .filter(|_| experiment(&mut rng, &rule, 0.3, 0.45, 50) == Verdict::Winner)
            .count();
        println!("A/B (0.30 against 0.45): a winner in {found} of 200");
        assert!(found > 150, "{found}");
    }
}
