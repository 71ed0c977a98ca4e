//! Rust source of any bytes through the walks over untrusted source: the analysis and the
//! check of an agent's edit. Each answers; nothing overflows a stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overseer_selfedit::{Snapshot, analysis};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let snapshot = Snapshot {
        files: [("src/lib.rs".to_string(), text.to_string())].into(),
    };
    let _ = analysis::analyze(&snapshot);
    let _ = analysis::host_reads(&snapshot);
});
