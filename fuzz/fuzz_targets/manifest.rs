//! An `agent.toml` of any bytes: a manifest within the host's ceilings, or `invalid_manifest`;
//! a manifest that resolves serializes and redacts without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overseer_kernel::manifest::{self, Manifest};
use overseer_kernel::{Error, KernelConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = KernelConfig::default();
    let read = Manifest::parse(text).and_then(|m| {
        m.check_capabilities()?;
        m.resolve("agent", &host).map(|r| (m, r))
    });
    match read {
        Ok((parsed, resolved)) => {
            assert!(resolved.limits.fuel <= host.max_fuel);
            assert!(resolved.limits.timeout <= host.max_timeout());
            let mut shown = serde_json::to_value(&parsed).expect("a manifest serializes");
            manifest::redact_json(&mut shown);
        }
        Err(Error::InvalidManifest(_)) => {}
        Err(other) => panic!("a manifest is refused as invalid_manifest, not {other:?}"),
    }
    let _ = manifest::redact_toml(text);
});
