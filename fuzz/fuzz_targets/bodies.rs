//! A request body of any bytes read as each public body type the API takes: an edit, a
//! governance decision, an agent spec, an experiment, a backtest. Each is read or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = serde_json::from_value::<overseer_selfedit::EditRequest>(value.clone());
    let _ = serde_json::from_value::<overseer_selfedit::architect::AgentSpec>(value.clone());
    let _ = serde_json::from_value::<overseer_meta::prompts::ExperimentSpec>(value.clone());
    let _ = serde_json::from_value::<overseer_trading::backtest::Spec>(value.clone());
    let _ = overseer_meta::governance::parse(&value);
});
