//! The watch window of a version: from its activation until `watch_calls` calls or `watch`
//! time have passed, its calls and failures are counted and judged against its policy and the
//! baseline, the error rate of the last version judged stable. Every change of phase happens
//! under one lock, so exactly one caller acts on a verdict.

use std::sync::Mutex;
use std::time::Instant;

use overseer_store::Verdict;

use crate::manifest::Policy;

/// Where a version stands with its watch window.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Being watched since `opened`, with the counters as they were then.
    Watching {
        opened: Instant,
        calls_before: u64,
        failures_before: u64,
        baseline: Option<f64>,
    },
    /// Past its window (or never watched): its failures are supervision's.
    Supervised,
    /// Judged failing: the rollback that verdict causes answers for its failures.
    Condemned,
}

/// A verdict, with what it was based on.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub verdict: Verdict,
    pub calls: u64,
    pub failures: u64,
    /// The error rate it was judged against.
    pub baseline: Option<f64>,
}

impl Reading {
    /// The error rate the window saw.
    pub fn rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }

    /// A sentence for the version's record.
    pub fn detail(&self, policy: &Policy) -> String {
        let (calls, failures) = (self.calls, self.failures);
        match self.verdict {
            Verdict::Stable => format!("{failures} of {calls} calls failed in the watch window"),
            Verdict::Inconclusive => format!(
                "only {calls} calls in the watch window (fewer than {}): kept without a verdict",
                policy.min_calls
            ),
            Verdict::Superseded => format!(
                "replaced after {calls} calls in its watch window ({failures} failed), too few to judge"
            ),
            Verdict::RolledBack | Verdict::Failed => format!(
                "{failures} of {calls} calls failed ({:.0}%), above {:.0}% and {}",
                self.rate() * 100.0,
                policy.max_error_rate * 100.0,
                self.baseline
                    .map(|b| format!("the last stable version's {:.0}%", b * 100.0))
                    .unwrap_or_else(|| "no stable version to compare with".to_string())
            ),
        }
    }
}

/// The verdict the policy gives `calls` with `failures`, judged against `baseline`.
/// `closing` is set when the window ends (by calls or by time); before that only a clear
/// failure gives a verdict. The verdicts are `Stable`, `Inconclusive` and `RolledBack`.
pub fn judge(
    calls: u64,
    failures: u64,
    min_calls: u32,
    max_error_rate: f64,
    baseline: Option<f64>,
    closing: bool,
) -> Option<Verdict> {
    let enough = calls >= u64::from(min_calls);
    let rate = if calls == 0 {
        0.0
    } else {
        failures as f64 / calls as f64
    };
    if enough && rate > max_error_rate && baseline.is_none_or(|b| rate > b) {
        return Some(Verdict::RolledBack);
    }
    if !closing {
        return None;
    }
    Some(if enough {
        Verdict::Stable
    } else {
        Verdict::Inconclusive
    })
}

/// What a finished call means for its version.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The window is open and has no verdict yet.
    Watching,
    /// The window just closed with this verdict; the caller acts on it.
    Closed(Reading),
    /// The version is past its window: its failures count for supervision.
    Supervised,
    /// The version is condemned: its failures are left to the rollback under way.
    Condemned,
}

/// The window state of one version.
#[derive(Debug)]
pub struct Window {
    phase: Mutex<Phase>,
}

impl Window {
    /// A window opened now, over counters that stand at `calls` and `failures`.
    pub fn open(calls: u64, failures: u64, baseline: Option<f64>) -> Self {
        Window {
            phase: Mutex::new(Phase::Watching {
                opened: Instant::now(),
                calls_before: calls,
                failures_before: failures,
                baseline,
            }),
        }
    }

    /// No window: the version is supervised from the start (a rollback target, or a version
    /// loaded at start with its verdict already given).
    pub fn supervised() -> Self {
        Window {
            phase: Mutex::new(Phase::Supervised),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the window is still open.
    pub fn watching(&self) -> bool {
        matches!(*self.phase(), Phase::Watching { .. })
    }

    /// When the open window was opened; it names the window for a timer that closes it.
    pub fn opened(&self) -> Option<Instant> {
        match &*self.phase() {
            Phase::Watching { opened, .. } => Some(*opened),
            Phase::Supervised | Phase::Condemned => None,
        }
    }

    /// Account for the version's counters now standing at `calls` and `failures`.
    /// `deadline` closes the window by time — the window opened at that instant, not one
    /// opened since.
    pub fn see(
        &self,
        calls: u64,
        failures: u64,
        policy: &Policy,
        deadline: Option<Instant>,
    ) -> Seen {
        let mut phase = self.phase();
        let (opened, calls_before, failures_before, baseline) = match &*phase {
            Phase::Supervised => return Seen::Supervised,
            Phase::Condemned => return Seen::Condemned,
            Phase::Watching {
                opened,
                calls_before,
                failures_before,
                baseline,
            } => (*opened, *calls_before, *failures_before, *baseline),
        };
        let deadline_passed = deadline == Some(opened);
        let calls = calls.saturating_sub(calls_before);
        let failures = failures.saturating_sub(failures_before);
        let closing = deadline_passed
            || calls >= u64::from(policy.watch_calls)
            || opened.elapsed() >= policy.watch;
        let Some(verdict) = judge(
            calls,
            failures,
            policy.min_calls,
            policy.max_error_rate,
            baseline,
            closing,
        ) else {
            return Seen::Watching;
        };
        *phase = if verdict.condemns() {
            Phase::Condemned
        } else {
            Phase::Supervised
        };
        Seen::Closed(Reading {
            verdict,
            calls,
            failures,
            baseline,
        })
    }

    /// What the window would conclude if the version were replaced now: a clear failure is
    /// `Failed`, too few calls `Superseded`, otherwise `Stable`; `None` when no window is
    /// open. Changes nothing: the store records the verdict first, then [`Window::settle`].
    pub fn superseded(&self, calls: u64, failures: u64, policy: &Policy) -> Option<Reading> {
        let phase = self.phase();
        let Phase::Watching {
            calls_before,
            failures_before,
            baseline,
            ..
        } = &*phase
        else {
            return None;
        };
        let (baseline, calls, failures) = (
            *baseline,
            calls.saturating_sub(*calls_before),
            failures.saturating_sub(*failures_before),
        );
        let verdict = match judge(
            calls,
            failures,
            policy.min_calls,
            policy.max_error_rate,
            baseline,
            true,
        ) {
            Some(Verdict::RolledBack) => Verdict::Failed,
            Some(Verdict::Stable) => Verdict::Stable,
            _ => Verdict::Superseded,
        };
        Some(Reading {
            verdict,
            calls,
            failures,
            baseline,
        })
    }

    /// Open a new window on a version seen before (its bytes pushed again).
    pub fn reopen(&self, calls: u64, failures: u64, baseline: Option<f64>) {
        *self.phase() = Phase::Watching {
            opened: Instant::now(),
            calls_before: calls,
            failures_before: failures,
            baseline,
        };
    }

    /// Close the window with `verdict`, now that the store holds it: a condemning verdict
    /// leaves the version's failures to the rollback under way, any other to supervision.
    pub fn settle(&self, verdict: Verdict) {
        *self.phase() = if verdict.condemns() {
            Phase::Condemned
        } else {
            Phase::Supervised
        };
    }

    /// A person took responsibility for the version (released it, or rolled back to it by
    /// name): from now on supervision watches it, whatever its verdict.
    pub fn supervise(&self) {
        *self.phase() = Phase::Supervised;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> Policy {
        Policy {
            canary: 20,
            watch_calls: 10,
            watch: Duration::from_secs(60),
            min_calls: 5,
            max_error_rate: 0.5,
            max_failures: 10,
            period: Duration::from_secs(10),
            health_every: Duration::from_secs(60),
            health_failures: 3,
        }
    }

    #[test]
    fn verdicts_follow_the_policy() {
        // Too few calls: nothing before the end, inconclusive at the end.
        assert_eq!(judge(2, 2, 5, 0.5, None, false), None);
        assert_eq!(judge(2, 2, 5, 0.5, None, true), Some(Verdict::Inconclusive));
        // Failing clearly: roll back early, without waiting for the end.
        assert_eq!(judge(5, 5, 5, 0.5, None, false), Some(Verdict::RolledBack));
        // Failing, but no worse than the last stable version: kept.
        assert_eq!(judge(10, 6, 5, 0.5, Some(0.7), true), Some(Verdict::Stable));
        assert_eq!(judge(10, 6, 5, 0.5, Some(0.7), false), None);
        // Healthy.
        assert_eq!(judge(10, 1, 5, 0.5, Some(0.0), true), Some(Verdict::Stable));
    }

    #[test]
    fn exactly_one_caller_sees_the_verdict() {
        let window = Window::open(100, 7, None);
        assert_eq!(window.see(103, 10, &policy(), None), Seen::Watching);
        let Seen::Closed(reading) = window.see(105, 12, &policy(), None) else {
            panic!("5 of 5 failed");
        };
        assert_eq!(reading.verdict, Verdict::RolledBack);
        assert_eq!((reading.calls, reading.failures), (5, 5));
        assert_eq!(window.see(106, 13, &policy(), None), Seen::Condemned);
        window.supervise();
        assert_eq!(window.see(107, 14, &policy(), None), Seen::Supervised);
    }

    #[test]
    fn a_window_closes_by_calls_or_by_time() {
        let window = Window::open(0, 0, Some(0.0));
        let Seen::Closed(reading) = window.see(10, 1, &policy(), None) else {
            panic!("10 calls close the window");
        };
        assert_eq!(reading.verdict, Verdict::Stable);
        let window = Window::open(0, 0, None);
        let opened = window.opened();
        let Seen::Closed(reading) = window.see(1, 0, &policy(), opened) else {
            panic!("the deadline closes the window");
        };
        assert_eq!(reading.verdict, Verdict::Inconclusive);
        assert!(!window.watching());
    }

    #[test]
    fn a_deadline_closes_only_the_window_it_was_set_for() {
        let window = Window::open(0, 0, None);
        let first = window.opened();
        window.reopen(0, 0, None);
        assert_ne!(window.opened(), first);
        assert_eq!(window.see(1, 0, &policy(), first), Seen::Watching);
        assert!(matches!(
            window.see(1, 0, &policy(), window.opened()),
            Seen::Closed(_)
        ));
    }

    #[test]
    fn a_replaced_version_is_judged_on_what_its_window_saw() {
        let failing = Window::open(0, 0, Some(0.0));
        let reading = failing.superseded(6, 6, &policy()).unwrap();
        assert_eq!(reading.verdict, Verdict::Failed);
        assert!(
            failing.watching(),
            "nothing changes before the store says so"
        );
        failing.settle(reading.verdict);
        assert_eq!(failing.see(7, 7, &policy(), None), Seen::Condemned);
        let young = Window::open(0, 0, None);
        assert_eq!(
            young.superseded(3, 3, &policy()).unwrap().verdict,
            Verdict::Superseded
        );
        let fine = Window::open(0, 0, None);
        let reading = fine.superseded(6, 0, &policy()).unwrap();
        assert_eq!(reading.verdict, Verdict::Stable);
        fine.settle(reading.verdict);
        assert!(fine.superseded(6, 0, &policy()).is_none(), "judged once");
        assert!(Window::supervised().superseded(1, 1, &policy()).is_none());
    }
}
