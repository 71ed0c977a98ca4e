//! A diff of any bytes applied to a small source tree: it applies inside the tree, or is
//! refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overseer_selfedit::{Snapshot, patch, snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(diff) = std::str::from_utf8(data) else {
        return;
    };
    let base = Snapshot {
        files: [
            ("src/lib.rs".to_string(), "a\nb\nc\nd\n".to_string()),
            ("agent.toml".to_string(), "name = \"x\"\n".to_string()),
        ]
        .into(),
    };
    if let Ok(applied) = patch::apply_leniently(&base, diff) {
        for path in applied.snapshot.files.keys() {
            assert!(snapshot::check_path(path).is_ok(), "{path}");
        }
    }
});
