//! The Overseer's settings (`[overseer]` in the configuration file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The loops' intervals (the seed's: health every minute, healing every five, performance
/// and optimisation hourly, governance daily), the clock factor that divides them all, and
/// the thresholds the loops judge by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OverseerConfig {
    /// Run the loops at all.
    pub enabled: bool,
    /// Every interval is divided by this (60: an hour passes in a minute), for demos and
    /// tests. No interval is shorter than [`MIN_INTERVAL`].
    pub clock_factor: f64,
    pub health_secs: u64,
    pub healing_secs: u64,
    pub performance_secs: u64,
    pub optimisation_secs: u64,
    pub governance_secs: u64,
    /// The window the health loop judges an agent's calls over, in seconds (scaled too).
    pub window_secs: u64,
    /// Fewest calls in the window to judge an agent's speed by.
    pub min_calls: usize,
    /// An agent is slow when its p95 latency reaches this share of its deadline…
    pub slow_share: f64,
    /// …and well again when it is back under this share.
    pub recovered_share: f64,
    /// An alert open this long (in seconds, scaled) is escalated once.
    pub escalate_after_secs: u64,
    /// A decision waiting for a person this long (in seconds, scaled) expires unapplied.
    pub approval_timeout_secs: u64,
}

/// The shortest interval any loop runs at, whatever the clock factor.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

impl Default for OverseerConfig {
    fn default() -> Self {
        OverseerConfig {
            enabled: true,
            clock_factor: 1.0,
            health_secs: 60,
            healing_secs: 300,
            performance_secs: 3600,
            optimisation_secs: 3600,
            governance_secs: 86_400,
            window_secs: 900,
            min_calls: 10,
            slow_share: 0.5,
            recovered_share: 0.4,
            escalate_after_secs: 1800,
            approval_timeout_secs: 86_400,
        }
    }
}

impl OverseerConfig {
    /// `secs` of loop time as wall time: divided by the clock factor, at least
    /// [`MIN_INTERVAL`].
    pub fn scaled(&self, secs: u64) -> Duration {
        let factor = if self.clock_factor.is_finite() && self.clock_factor > 0.0 {
            self.clock_factor
        } else {
            1.0
        };
        Duration::try_from_secs_f64(secs as f64 / factor)
            .unwrap_or(Duration::MAX)
            .max(MIN_INTERVAL)
    }

    /// [`OverseerConfig::scaled`] in milliseconds.
    pub fn scaled_ms(&self, secs: u64) -> u64 {
        u64::try_from(self.scaled(secs).as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_scale_by_the_clock_factor_down_to_a_floor() {
        let mut config = OverseerConfig::default();
        assert_eq!(config.scaled(60), Duration::from_secs(60));
        config.clock_factor = 60.0;
        assert_eq!(config.scaled(3600), Duration::from_secs(60));
        config.clock_factor = 1e9;
        assert_eq!(config.scaled(60), MIN_INTERVAL);
        config.clock_factor = 0.0;
        assert_eq!(config.scaled(60), Duration::from_secs(60));
        config.clock_factor = 1e-300;
        assert_eq!(config.scaled_ms(u64::MAX), u64::MAX, "no overflow");
    }
}
