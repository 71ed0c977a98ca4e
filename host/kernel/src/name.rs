//! Agent names: what the API, the store and the working copies may call an agent.

use crate::error::{Error, Result};

/// Names an agent may not take: the sources of the host's own events (`overseer`, `http`,
/// `schedule`), and names the host keeps for its parts and its topics, so that no agent's
/// events or logs can pass for the host's.
pub const RESERVED_NAMES: &[&str] = &[
    "overseer", "host", "system", "api", "http", "schedule", "bus", "alert", "edit", "market",
    "trade", "risk", "audit", "broker", "research",
];

/// Check an agent name against `[a-z0-9][a-z0-9-]{0,62}`, not one of [`RESERVED_NAMES`]:
/// safe in a URL path, a file name and a cargo package name.
pub fn check_name(name: &str) -> Result<()> {
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::ReservedName(name.to_string()));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(Error::InvalidName(name.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in ["echo", "a", "0", "world-monitor", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "Echo",
            "a_b",
            "a.b",
            "a/b",
            "..",
            &"a".repeat(64),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for reserved in ["overseer", "http", "schedule"] {
            let err = check_name(reserved).unwrap_err();
            assert_eq!(err.code(), "reserved_name", "{reserved}");
        }
    }
}
