//! The dashboard in headless Chromium, driven through chromedriver (WebDriver) against a real
//! daemon on loopback: the page asks for the token, shows the daemon's agents, alerts and
//! decisions, approves a decision and rolls an agent back through the API; screenshots are
//! saved under the tests' target directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use overseer_tests::{Daemon, TOKEN, WAIT, component, eventually};
use reqwest::StatusCode;
use serde_json::json;

/// chromedriver and Chromium from the machine (`chromium-driver`, `chromium`); CI installs
/// both. `None` (outside CI) when either is missing.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(n))
                    .find(|p| p.is_file())
            })
        })
    };
    let found = find(&["chromedriver"]).zip(find(&["chromium", "chromium-browser"]));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs chromium and chromium-driver: the dashboard must be checked"
        );
        eprintln!("no chromedriver or chromium here: the dashboard is not checked");
    }
    found
}

/// A headless Chromium on a fresh profile, and the chromedriver that drives it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(driver: &Path, chromium: &Path) -> Browser {
        // Installed once per process; a second install finds it there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(WAIT, "chromedriver to answer", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::rustls()
                    .ok()?
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Browser {
            client,
            driver: child,
            _profile: profile,
        }
    }

    /// Wait for the element `css` whose text contains `text`; its text.
    async fn text_of(&self, css: &str, text: &str) -> String {
        eventually(WAIT, &format!("{css} to show {text:?}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let shown = element.text().await.ok()?;
            shown.contains(text).then_some(shown)
        })
        .await
    }

    /// Type `text` into the input `css`.
    async fn type_into(&self, css: &str, text: &str) {
        let input = eventually(WAIT, &format!("{css} to be there"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await;
        input.send_keys(text).await.expect("typing");
    }

    /// Open the dashboard of `daemon` and give it the token when it asks.
    async fn log_in(&self, daemon: &Daemon, shot: Option<&str>) {
        self.client.goto(&daemon.url("/")).await.unwrap();
        self.text_of("#login", "Token").await;
        if let Some(name) = shot {
            self.screenshot(name).await;
        }
        self.type_into("#token", TOKEN).await;
        self.click("#save-token").await;
    }

    async fn click(&self, css: &str) {
        let element = eventually(WAIT, &format!("{css} to be there"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await;
        element.click().await.expect("click");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}: {} bytes",
            png.len()
        );
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_daemon_and_acts_through_its_api() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let daemon = Daemon::start().await;
    // An agent with two versions, and one rolled back by its watch window (an alert).
    daemon.push_ok("echo", "echo", "").await;
    let (status, body) = daemon
        .push(
            "echo",
            overseer::bench::tagged(&component("echo"), "2"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    daemon.failing_watch_window("svc").await;
    // An order a person placed.
    let (status, order) = daemon
        .post(
            "/v1/orders",
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 3, "type": "market", "client_order_id": "dash-1" })
                .to_string(),
        )
        .await;
    assert!(status.is_success(), "{order}");
    let order_id = order["id"].as_str().unwrap().to_string();
    // A decision that waits for a person: the kill switch.
    let (status, decision) = daemon
        .post(
            "/v1/decisions",
            json!({
                "kind": "risk_management", "title": "halt trading for the audit", "priority": "high",
                "expected_impact": "no orders", "effort": "low", "rationale": "an audit",
                "actions": [{ "type": "halt_trading" }],
                "metric": { "name": "calls", "agent": "echo", "comparator": "at_least", "target": 0.0, "due_in_secs": 60 },
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{decision}");
    let decision_id = decision["id"].as_i64().unwrap();

    // Without the token the API refuses, and so does it from another origin.
    let anonymous = reqwest::Client::new();
    let (refused, foreign) = (
        anonymous
            .get(daemon.url("/v1/agents"))
            .send()
            .await
            .unwrap(),
        anonymous
            .get(daemon.url("/v1/agents"))
            .bearer_auth(TOKEN)
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let rebound = anonymous
        .get(daemon.url("/"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        rebound.status(),
        StatusCode::MISDIRECTED_REQUEST,
        "no DNS rebinding"
    );

    let browser = Browser::start(&driver, &chromium).await;
    let c = &browser.client;
    // The page asks for the token.
    browser.log_in(&daemon, Some("login")).await;

    // Status: the daemon's agents.
    browser.text_of("tr[data-agent=echo]", "echo").await;
    browser.text_of("tr[data-agent=svc]", "svc").await;
    browser.screenshot("status").await;

    // An agent's page: roll it back and see the version change through the API.
    c.goto(&daemon.url("/#agent/echo")).await.unwrap();
    browser.text_of("#active-version", "2").await;
    browser.text_of("#page", "Versions").await;
    browser.click("#rollback").await;
    c.accept_alert().await.unwrap();
    eventually(WAIT, "echo rolled back to version 1", || async {
        (daemon.agent("echo").await["active_version"] == 1).then_some(())
    })
    .await;
    browser.text_of("#active-version", "1").await;
    browser.screenshot("agent").await;

    // Alerts: the watch window's rollback, with its evidence.
    c.goto(&daemon.url("/#alerts/open")).await.unwrap();
    browser.text_of("#page", "svc").await;
    browser.text_of("#page", "rollback").await;
    browser.screenshot("alerts").await;

    // Governance: approve the waiting decision; the API shows it applied.
    c.goto(&daemon.url("/#governance")).await.unwrap();
    browser
        .text_of(
            &format!("tr[data-decision='{decision_id}']"),
            "halt trading for the audit",
        )
        .await;
    browser
        .type_into(
            &format!("#reason-{decision_id}"),
            "approved in the dashboard",
        )
        .await;
    browser.click(&format!("#approve-{decision_id}")).await;
    let applied = eventually(WAIT, "the decision applied", || async {
        let (_, d) = daemon.get(&format!("/v1/decisions/{decision_id}")).await;
        (d["state"] == "applied").then_some(d)
    })
    .await;
    assert_eq!(applied["reason"], "approved in the dashboard");
    assert_eq!(applied["decided_by"], "person");
    browser.screenshot("governance").await;

    // Trading: the kill switch the decision threw.
    c.goto(&daemon.url("/#trading")).await.unwrap();
    browser.text_of("#risk-state", "halted").await;
    browser.text_of("#page", &order_id).await;
    browser.screenshot("trading").await;

    // Changes: the rollback and the decision on the trail.
    c.goto(&daemon.url("/#changes")).await.unwrap();
    browser.text_of("#page", "rollback").await;
    browser.screenshot("changes").await;
    // Performance: the busiest agent's calls over time.
    c.goto(&daemon.url("/#performance/svc")).await.unwrap();
    browser.text_of("#perf-agent", "svc").await;
    for view in ["performance", "research", "prompts"] {
        c.goto(&daemon.url(&format!("/#{view}"))).await.unwrap();
        eventually(WAIT, &format!("the {view} page"), || async {
            let page = c.find(Locator::Css("#page")).await.ok()?;
            (page.attr("data-page").await.ok()?? == view).then_some(())
        })
        .await;
        browser.screenshot(view).await;
    }
    browser.stop().await;
    daemon.stop().await;
}

/// Under `--public-read` the page reads without a token; an action still needs one.
#[tokio::test]
async fn under_public_read_the_page_reads_without_a_token() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = overseer_tests::test_config(dir.path());
    config.public_read = true;
    let daemon = Daemon::start_with(config).await;
    daemon.push_ok("echo", "echo", "").await;
    daemon.push_ok("svc", "echo", "").await;
    let browser = Browser::start(&driver, &chromium).await;
    browser
        .client
        .goto(&daemon.url("/#agent/svc"))
        .await
        .unwrap();
    browser.text_of("#active-version", "1").await;
    browser.click("#rollback").await;
    browser.client.accept_alert().await.unwrap();
    // Refused without the token: the page asks for it.
    browser.text_of("#login", "Token").await;
    browser.screenshot("public-read").await;
    assert_eq!(daemon.agent("svc").await["active_version"], 1);
    browser.stop().await;
    daemon.stop().await;
}

/// The page with 1,000 agents and 100,000 events in the store: the time from navigation to
/// the first drawn page, and each page's fetch-and-draw, printed (a benchmark: nothing is
/// asserted of the times).
#[tokio::test]
async fn the_page_stays_responsive_with_a_thousand_agents_and_a_hundred_thousand_events() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let daemon = Daemon::start().await;
    let wasm = component("echo");
    let started = std::time::Instant::now();
    for chunk in (0..1000).collect::<Vec<u32>>().chunks(20) {
        let pushes = chunk.iter().map(|i| {
            let wasm = wasm.clone();
            let daemon = &daemon;
            async move {
                let (status, body) = daemon.push(&format!("a{i:04}"), wasm, Some("")).await;
                assert!(status.is_success(), "{body}");
            }
        });
        futures_util::future::join_all(pushes).await;
    }
    let pushed = started.elapsed();
    let started = std::time::Instant::now();
    // One statement, as an operator's long-running fleet would have written them one by one.
    let inserted = daemon
        .kernel
        .store
        .execute_raw(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             INSERT INTO events (id, topic, payload, source, at_ms, size) \
             SELECT 'bench-' || i, 'bench.tick', '{{\"n\":' || i || '}}', 'a0001', {}, 8 FROM n",
            overseer_store::now_ms()
        ))
        .await
        .unwrap();
    assert_eq!(inserted, 100_000);
    let logged = started.elapsed();
    let agents = daemon.every("/v1/agents?limit=1000", "agents").await;
    assert_eq!(agents.len(), 1000);

    let browser = Browser::start(&driver, &chromium).await;
    let c = &browser.client;
    browser.log_in(&daemon, None).await;
    browser.text_of("tr[data-agent=a0000]", "a0000").await;
    let rows = c
        .find_all(Locator::Css("tr[data-agent]"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows, 100, "a page of a hundred agents");
    browser.text_of(".pager", "of 1000").await;
    let mut figures = Vec::new();
    for view in [
        "status",
        "changes",
        "performance/a0001",
        "alerts",
        "governance",
    ] {
        c.goto(&daemon.url(&format!("/#{view}"))).await.unwrap();
        c.refresh().await.unwrap();
        let (first, drawn) = eventually(WAIT, &format!("the {view} page"), || async {
            let page = c.find(Locator::Css("#page")).await.ok()?;
            let first = page.attr("data-first-render-ms").await.ok()??;
            let drawn = page.attr("data-rendered-ms").await.ok()??;
            Some((first, drawn))
        })
        .await;
        figures.push(format!(
            "{view}: first page drawn {first} ms after navigation (fetch and draw {drawn} ms)"
        ));
    }
    browser.screenshot("thousand-agents").await;
    println!(
        "dashboard with 1,000 agents (pushed in {:.1} s) and 100,000 events (written in {:.1} s):\n  {}",
        pushed.as_secs_f64(),
        logged.as_secs_f64(),
        figures.join("\n  ")
    );
    browser.stop().await;
    daemon.stop().await;
}
