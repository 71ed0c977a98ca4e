//! Triggers beyond HTTP: events on the bus reach subscribers; schedules fire at their interval.

use std::time::Duration;

use overseer_tests::{Daemon, eventually, manifest};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn recorded(daemon: &Daemon, agent: &str) -> Vec<Value> {
    let (status, body) = daemon.invoke(agent, json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["output"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn event_emitted_by_counter_reaches_a_subscriber() {
    let daemon = Daemon::start().await;
    daemon.push_agent("counter", "counter").await;
    daemon.push_agent("recorder", "fixture-recorder").await;
    for _ in 0..3 {
        let (status, body) = daemon.invoke("counter", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let events = eventually(Duration::from_secs(10), "three deliveries", || async {
        let events = recorded(&daemon, "recorder").await;
        (events.len() >= 3).then_some(events)
    })
    .await;
    let mut counts: Vec<u64> = events
        .iter()
        .map(|e| {
            assert_eq!(e["topic"], "counter.incremented");
            assert_eq!(e["source"], "counter");
            let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            payload["count"].as_u64().unwrap()
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 3]);

    let (status, body) = daemon.get("/v1/events?topic=counter.incremented").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn schedule_fires_at_its_interval() {
    let daemon = Daemon::start().await;
    let text = manifest("fixture-recorder")
        .lines()
        .filter(|l| !l.trim_start().starts_with("name"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{text}\n");
    let text = if text.contains("[triggers]") {
        text.replace("[triggers]", "[triggers]\nevery = \"200ms\"")
    } else {
        format!("{text}\n[triggers]\nevery = \"200ms\"\n")
    };
    let (status, body) = daemon
        .push(
            "ticker",
            overseer_tests::component("fixture-recorder"),
            Some(&text),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ticks = eventually(Duration::from_secs(10), "four ticks", || async {
        let ticks: Vec<Value> = recorded(&daemon, "ticker")
            .await
            .into_iter()
            .filter(|e| e["topic"] == "schedule")
            .collect();
        (ticks.len() >= 4).then_some(ticks)
    })
    .await;
    let times: Vec<u64> = ticks.iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= 150, "ticks {gap} ms apart, interval is 200 ms");
    }
    let span = times[times.len() - 1] - times[0];
    println!(
        "{} ticks, {:.0} ms apart on average",
        times.len(),
        span as f64 / (times.len() - 1) as f64
    );
}
