//! What the loops read of an agent over a window: calls, failures, latency percentiles, fuel
//! and memory, from the kernel's recent calls.

use overseer_kernel::telemetry::CallSample;
use serde::Serialize;
use statrs::statistics::{Data, OrderStatistics};

/// One agent's calls over a window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = TelemetryWindow)]
pub struct Window {
    pub agent: String,
    pub calls: usize,
    pub failures: usize,
    /// Failures over calls; 0 without calls.
    pub error_rate: f64,
    /// Latency percentiles in milliseconds (statrs' `percentile`, the R-8 estimator);
    /// `None` without calls.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Fuel burned by the window's calls.
    pub fuel: u64,
    /// The highest peak memory of a call, in bytes.
    pub peak_memory: u64,
    /// Calls per minute over the window.
    pub per_minute: f64,
}

/// The window of `agent` made of `calls`, which span `window_ms`.
pub fn window(agent: &str, calls: &[CallSample], window_ms: u64) -> Window {
    let failures = calls.iter().filter(|c| c.outcome != "ok").count();
    let mut latencies = Data::new(calls.iter().map(|c| c.seconds * 1000.0).collect::<Vec<_>>());
    let percentile =
        |data: &mut Data<Vec<f64>>, p: usize| (!calls.is_empty()).then(|| data.percentile(p));
    Window {
        agent: agent.to_string(),
        calls: calls.len(),
        failures,
        error_rate: if calls.is_empty() {
            0.0
        } else {
            failures as f64 / calls.len() as f64
        },
        p50_ms: percentile(&mut latencies, 50),
        p95_ms: percentile(&mut latencies, 95),
        p99_ms: percentile(&mut latencies, 99),
        fuel: calls.iter().map(|c| c.fuel).sum(),
        peak_memory: calls.iter().map(|c| c.peak_memory).max().unwrap_or(0),
        per_minute: calls.len() as f64 * 60_000.0 / window_ms.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ms: f64, outcome: &'static str) -> CallSample {
        CallSample {
            at_ms: 0,
            seconds: ms / 1000.0,
            outcome,
            fuel: 10,
            peak_memory: 100,
        }
    }

    #[test]
    fn a_window_counts_failures_and_reads_percentiles() {
        let calls: Vec<CallSample> = (1..=100)
            .map(|n| call(f64::from(n), if n % 10 == 0 { "trap" } else { "ok" }))
            .collect();
        let w = window("a", &calls, 60_000);
        assert_eq!((w.calls, w.failures), (100, 10));
        assert!((w.error_rate - 0.1).abs() < 1e-12);
        let p50 = w.p50_ms.unwrap();
        assert!((50.0..=51.0).contains(&p50), "{p50}");
        let p95 = w.p95_ms.unwrap();
        assert!((95.0..=96.0).contains(&p95), "{p95}");
        assert_eq!(w.fuel, 1000);
        assert!((w.per_minute - 100.0).abs() < 1e-9);
        let empty = window("b", &[], 60_000);
        assert_eq!((empty.calls, empty.p95_ms), (0, None));
    }
}
