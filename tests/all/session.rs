//! Sessions: one instance of a component called many times, each call with its own fuel and
//! deadline; a fault closes the session.

use std::sync::Arc;
use std::time::Duration;

use overseer_sandbox::{
    Error, Event, Fault, Limits, MemoryServices, Sandbox, SandboxConfig, Services,
};
use overseer_tests::component;

fn event(n: usize) -> Event {
    Event {
        id: n.to_string(),
        topic: "market.tick".to_string(),
        payload: format!("{{\"n\":{n}}}"),
        source: "test".to_string(),
        at_ms: 0,
    }
}

fn limits(timeout_ms: u64) -> Limits {
    Limits {
        fuel: 1 << 50,
        memory_bytes: 32 << 20,
        timeout: Duration::from_millis(timeout_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_answers_many_calls_each_with_its_own_fuel() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let prepared = sandbox.prepare(&component("echo")).unwrap();
    let services = Services::memory(Arc::new(MemoryServices::default()));
    let mut session = sandbox
        .session(&prepared, &limits(1_000), services)
        .await
        .unwrap();
    let mut fuel = Vec::new();
    for n in 0..2_000 {
        let answer = session.handle(&event(n)).await.unwrap();
        assert!(
            answer.value.contains(&format!("\"n\":{n}")),
            "{}",
            answer.value
        );
        fuel.push(answer.fuel_used);
    }
    // Fuel is per call: the last call costs what the first did, not the sum.
    assert!(fuel[1_999] <= fuel[0] * 2, "{} vs {}", fuel[1_999], fuel[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_ends_the_session_with_its_cause() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    for (package, expected) in [
        ("fixture-spin", "timeout"),
        ("fixture-memory-hog", "memory_exceeded"),
    ] {
        let prepared = sandbox.prepare(&component(package)).unwrap();
        let services = Services::memory(Arc::new(MemoryServices::default()));
        let mut session = sandbox
            .session(&prepared, &limits(300), services)
            .await
            .unwrap();
        for _ in 0..2 {
            match session.handle(&event(0)).await {
                Err(Error::Fault(fault)) => {
                    assert_eq!(fault.code(), expected, "{package}: {fault:?}")
                }
                other => panic!("{package}: {other:?}"),
            }
        }
    }
    // Fuel, per call.
    let prepared = sandbox.prepare(&component("fixture-spin")).unwrap();
    let services = Services::memory(Arc::new(MemoryServices::default()));
    let mut session = sandbox
        .session(
            &prepared,
            &Limits {
                fuel: 10_000_000,
                ..limits(5_000)
            },
            services,
        )
        .await
        .unwrap();
    assert!(matches!(
        session.handle(&event(0)).await,
        Err(Error::Fault(Fault::FuelExhausted(_)))
    ));
}
