//! Bounded property runs of the request bodies' readers (the fuzz target `bodies` runs them
//! unbounded): any JSON is read or refused, and a field a body does not know, or a field of
//! the wrong type, is never read as a default.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::agents::RollbackRequest;
use crate::budgets::NewBudget;
use crate::overseer::Verdict;
use crate::prompts::Label;
use crate::trading::{NewOrder, RiskAction};

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that read as their type, one of each.
fn valid() -> Vec<(&'static str, Value)> {
    vec![
        ("rollback", json!({ "version": 3 })),
        (
            "budget",
            json!({ "tokens_per_day": 10, "usd_per_day": 1.5 }),
        ),
        ("verdict", json!({ "reason": "fine" })),
        ("label", json!({ "label": "production", "version": 2 })),
        (
            "order",
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 1.0 }),
        ),
        ("risk", json!({ "action": "halt" })),
        (
            "edit",
            json!({ "base_version": 1, "diff": "", "reason": "r" }),
        ),
        (
            "decision",
            json!({
                "kind": "risk_management",
                "title": "halt",
                "priority": "critical",
                "expected_impact": "no new exposure",
                "effort": "low",
                "rationale": "a test",
                "actions": [{ "type": "halt_trading" }],
                "metric": {
                    "name": "calls", "agent": "echo", "comparator": "at_least",
                    "target": 0.0, "due_in_secs": 86400
                },
            }),
        ),
    ]
}

fn reads<T: DeserializeOwned>(value: &Value) -> bool {
    serde_json::from_value::<T>(value.clone()).is_ok()
}

/// Whether `value` reads as the body `kind`.
fn reads_as(kind: &str, value: &Value) -> bool {
    match kind {
        "rollback" => reads::<RollbackRequest>(value),
        "budget" => reads::<NewBudget>(value),
        "verdict" => reads::<Verdict>(value),
        "label" => reads::<Label>(value),
        "order" => reads::<NewOrder>(value),
        "risk" => reads::<RiskAction>(value),
        "edit" => reads::<overseer_selfedit::EditRequest>(value),
        "decision" => overseer_meta::governance::parse(value).is_ok(),
        other => unreachable!("{other}"),
    }
}

#[test]
fn the_valid_bodies_read() {
    for (kind, value) in valid() {
        assert!(reads_as(kind, &value), "{kind}: {value}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any JSON: read or refused, never a panic.
    #[test]
    fn any_json_is_read_or_refused(value in any_json()) {
        for (kind, _) in valid() {
            reads_as(kind, &value);
        }
    }

    /// A valid body with a field it does not know is refused.
    #[test]
    fn an_unknown_field_is_refused(key in "[a-z_]{1,12}", extra in any_json(), which in 0usize..8) {
        let (kind, mut value) = valid().swap_remove(which);
        // Fields the type has that the sample leaves out.
        let optional: &[&str] = match kind {
            "edit" => &["files"],
            "order" => &["notional", "type", "limit_price", "time_in_force", "client_order_id"],
            "label" => &["reason"],
            _ => &[],
        };
        let known = value.as_object().unwrap().contains_key(&key) || optional.contains(&key.as_str());
        prop_assume!(!known);
        value.as_object_mut().unwrap().insert(key, extra);
        prop_assert!(!reads_as(kind, &value), "{}: {}", kind, value);
    }

    /// A valid body whose field is replaced by a value of another type is refused, unless
    /// that value is of the field's own type.
    #[test]
    fn a_mistyped_field_is_refused(which in 0usize..8, field in 0usize..4, replacement in any_json()) {
        let (kind, mut value) = valid().swap_remove(which);
        let object = value.as_object_mut().unwrap();
        let Some(key) = object.keys().nth(field).cloned() else { return Ok(()); };
        let old = object[&key].clone();
        let same_type = std::mem::discriminant(&old) == std::mem::discriminant(&replacement);
        // A null is an absent optional field, which some fields may be.
        prop_assume!(!same_type && !replacement.is_null());
        object.insert(key, replacement);
        prop_assert!(!reads_as(kind, &value), "{}: {}", kind, value);
    }
}
