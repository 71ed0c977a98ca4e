//! Any input, any client: slow clients are dropped within the timeouts while agents keep
//! answering, every refusal of a fuzzed stream of requests is the documented JSON error, lists
//! page, secrets are never served, and deep shapes of source leave the daemon up.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use overseer_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The codes the README's error table documents.
fn documented_codes() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let table = readme
        .split("| status | codes |")
        .nth(1)
        .expect("the README's error table");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .flat_map(|line| line.split('`').skip(1).step_by(2).map(str::to_string))
        .collect()
}

/// Connections the daemon on `port` holds open: its sockets of local port `port` that are
/// established (`/proc/net/tcp`, state `01`). Other tests of this process open and close
/// descriptors of their own, so the daemon's are counted by its port.
fn served_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "01"
        })
        .count()
}

/// Whether the server closed `stream` (a read answers end of file or an error), reading and
/// dropping whatever it answered first.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut answered = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(answered),
            Ok(Ok(n)) => answered.extend_from_slice(&buffer[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_clients_are_dropped_within_the_timeouts_while_agents_answer() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = test_config(temp.path());
    config.header_timeout_ms = 1000;
    config.body_timeout_ms = 1000;
    let daemon = Daemon::start_with(config).await;
    daemon.push_agent("echo", "echo").await;
    let address = daemon.url("").trim_start_matches("http://").to_string();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();

    // 100 requests whose head never ends, and 20 whose body stalls after its first bytes.
    let mut heads = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        heads.push(stream);
    }
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/agents/echo/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"slow\": "
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        bodies.push(stream);
    }
    let held = served_connections(port);
    assert!(held >= 120, "the slow clients are connected: {held}");

    // Echo keeps answering while they hang.
    let started = Instant::now();
    for n in 0..20 {
        let (status, answer) = daemon.invoke("echo", json!({ "n": n })).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let echo_while_held = started.elapsed();

    // Each is dropped by the server: the stalled heads silently, the stalled bodies with
    // 408 request_timeout. None is still open after five times the timeout.
    for stream in &mut heads {
        let answered = closed_by_server(stream, Duration::from_secs(5))
            .await
            .expect("a half-sent head is dropped within the timeout");
        assert!(answered.is_empty() || answered.starts_with(b"HTTP/1.1 408"));
    }
    for stream in &mut bodies {
        let answered = closed_by_server(stream, Duration::from_secs(5))
            .await
            .expect("a stalled body is dropped within the timeout");
        let text = String::from_utf8_lossy(&answered);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"request_timeout\""), "{text}");
    }
    // The daemon holds none of them any more, though the clients have not let go; the
    // test's own kept-alive connection goes too once it has been idle for the timeout.
    let left = eventually(WAIT, "the daemon to hold no connection", || async {
        let left = served_connections(port);
        (left == 0).then_some(left)
    })
    .await;
    drop(heads);
    drop(bodies);
    let (status, _) = daemon.invoke("echo", json!("after")).await;
    assert_eq!(status, StatusCode::OK);
    println!(
        "120 slow clients held: 20 echo calls took {:.1} ms meanwhile; the daemon's connections {held} while held, {left} after the timeouts",
        echo_while_held.as_secs_f64() * 1000.0,
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = test_config(temp.path());
    config.header_timeout_ms = 3000;
    config.max_connections = 4;
    let daemon = Daemon::start_with(config).await;
    let address = daemon.url("").trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&address).await.unwrap());
    }
    let mut fifth = tokio::spawn(async move {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        answer
    });
    // While the four hold every slot, the fifth is not served...
    let early = tokio::time::timeout(Duration::from_millis(1000), &mut fifth).await;
    assert!(early.is_err(), "a fifth connection was served past the cap");
    // ...and it is once they are dropped at the header timeout.
    for stream in &mut silent {
        closed_by_server(stream, Duration::from_secs(10))
            .await
            .expect("an idle connection is dropped");
    }
    let answer = fifth.await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

/// A deterministic stream of numbers for the fuzzer (a linear congruential generator: the
/// run is the same every time, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        &from[(self.0 >> 33) as usize % from.len()]
    }
}

#[tokio::test]
async fn a_thousand_fuzzed_requests_are_answered_in_the_documented_error_shape() {
    let daemon = Daemon::start().await;
    daemon.push_agent("echo", "echo").await;
    let documented = documented_codes();
    let routes = [
        "/v1/agents",
        "/v1/agents/{name}",
        "/v1/agents/{name}/versions",
        "/v1/agents/{name}/rollback",
        "/v1/agents/{name}/invoke",
        "/v1/agents/{name}/logs",
        "/v1/agents/{name}/release",
        "/v1/agents/{name}/edits",
        "/v1/agents/{name}/edits/{id}",
        "/v1/agents/{name}/versions/{id}/diff/{id}",
        "/v1/agents/{name}/source",
        "/v1/agents/{name}/analysis",
        "/v1/alerts",
        "/v1/alerts/{id}",
        "/v1/alerts/{id}/resolve",
        "/v1/audit",
        "/v1/audit/verify",
        "/v1/backtests",
        "/v1/backtests/{id}",
        "/v1/budgets",
        "/v1/budgets/{name}",
        "/v1/overseer",
        "/v1/overseer/runs",
        "/v1/overseer/loops/{name}/run",
        "/v1/reports",
        "/v1/reports/{file}",
        "/v1/decisions",
        "/v1/decisions/{id}",
        "/v1/decisions/{id}/approve",
        "/v1/decisions/{id}/reject",
        "/v1/prompts",
        "/v1/prompts/{name}",
        "/v1/prompts/{name}/versions",
        "/v1/prompts/{name}/diff/{id}/{id}",
        "/v1/prompts/{name}/labels",
        "/v1/prompts/{name}/rollback",
        "/v1/experiments",
        "/v1/experiments/{id}",
        "/v1/experiments/{id}/stop",
        "/v1/architect",
        "/v1/architect/specs",
        "/v1/architect/specs/{id}",
        "/v1/architect/specs/{id}/approve",
        "/v1/architect/specs/{id}/reject",
        "/v1/research/results",
        "/v1/research/tasks",
        "/v1/research/tracks",
        "/v1/health",
        "/v1/system",
        "/v1/limits",
        "/v1/events",
        "/v1/llm",
        "/metrics",
        "/v1/market",
        "/v1/market/{name}/bars",
        "/v1/portfolio",
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/trades",
        "/v1/risk",
        "/v1/memory",
        "/v1/performance",
        "/v1/telemetry",
        "/v1/telemetry/{name}",
        "/v1/nowhere",
        "/v1/agents/{name}/nothing/{id}",
    ];
    let long = "x".repeat(300);
    let names = [
        "echo",
        "missing",
        "..",
        "%2e%2e",
        "Echo!",
        "%00",
        long.as_str(),
        "a%2Fb",
        "latest.json",
    ];
    let ids = [
        "1",
        "0",
        "-1",
        "abc",
        "99999999999999999999",
        "1.5",
        "%20",
        "2026-01-01.html",
    ];
    let queries = [
        "",
        "?limit=abc",
        "?limit=0",
        "?limit=-5",
        "?after=zzz",
        "?after=-1",
        "?unknown=1",
        "?limit=2&after=1",
        "?state=bogus",
        "?window_ms=0",
        "?%zz",
        "?version=x",
        "?collection=shared%2Fnotes&k=abc",
    ];
    let deep = "[".repeat(5000);
    let bodies: [Option<&[u8]>; 12] = [
        None,
        Some(b"{"),
        Some(b"[]"),
        Some(b"null"),
        Some(b"{\"unknown\": 1}"),
        Some(b"\"text\""),
        Some(b"{\"version\": \"1\"}"),
        Some(b"{\"reason\": 5}"),
        Some(deep.as_bytes()),
        Some(b"\xff\xfe\x00garbage"),
        Some(b"1e999999"),
        Some(b"--x\r\nContent-Disposition: form-data; name=\"component\"\r\n\r\n"),
    ];
    let content_types = [
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/wasm",
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
        reqwest::Method::OPTIONS,
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut rng = Lcg(19);
    let (mut refused, mut served) = (0, 0);
    let mut codes = BTreeSet::new();
    let mut undocumented = BTreeSet::new();
    for n in 0..1000 {
        let mut path = rng.pick(&routes).to_string();
        while path.contains("{name}") {
            path = path.replacen("{name}", rng.pick::<&str>(&names), 1);
        }
        while path.contains("{id}") {
            path = path.replacen("{id}", rng.pick::<&str>(&ids), 1);
        }
        path = path.replace("{file}", rng.pick::<&str>(&ids));
        let url = format!("{}{}", daemon.url(&path), rng.pick(&queries));
        let method = rng.pick(&methods).clone();
        let mut request = client
            .request(method.clone(), &url)
            .bearer_auth(TOKEN)
            .header("content-type", *rng.pick(&content_types));
        if let Some(body) = rng.pick(&bodies) {
            request = request.body(body.to_vec());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} {method} {url}: {e}"));
        let status = response.status();
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "request {n} {method} {url}"
        );
        if status.is_success() {
            served += 1;
            continue;
        }
        refused += 1;
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
            panic!("request {n} {method} {url} ({status}): not JSON: {text:?}")
        });
        let code = answer["error"]["code"].as_str().unwrap_or_else(|| {
            panic!("request {n} {method} {url} ({status}): no error code: {answer}")
        });
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "request {n}: {answer}"
        );
        if !documented.contains(code) {
            undocumented.insert(format!("{code} ({status}, e.g. {method} {path})"));
        }
        codes.insert(code.to_string());
    }
    assert!(
        undocumented.is_empty(),
        "codes not in the README's table: {undocumented:#?}"
    );
    let (status, _) = daemon.get("/v1/health").await;
    assert_eq!(status, StatusCode::OK, "the daemon is up after the run");
    println!(
        "1000 fuzzed requests: {served} served, {refused} refused with {} distinct codes: {codes:?}",
        codes.len()
    );
}

#[tokio::test]
async fn lists_page_with_limit_and_after_to_their_end() {
    let daemon = Daemon::start().await;
    for n in 0..5 {
        daemon
            .push_tagged_ok("echo", "echo", &n.to_string(), "")
            .await;
    }
    // Versions by number, two a page: 1 2 | 3 4 | 5.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = daemon
            .get(&format!("/v1/agents/echo/versions?limit=2{after}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let versions = page["versions"].as_array().unwrap();
        assert!(versions.len() <= 2);
        seen.extend(versions.iter().map(|v| v["number"].as_u64().unwrap()));
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let mut all: Vec<u64> = seen.clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), seen.len(), "no version twice: {seen:?}");
    assert_eq!(all.len(), 5, "{seen:?}");

    // A list read newest first from the store, by id: three decisions, two a page.
    for n in 0..3 {
        let decision = crate::overseer::halt(&format!("halt {n}"));
        let (status, body) = daemon.post("/v1/decisions", decision.to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, first) = daemon.get("/v1/decisions?limit=2").await;
    let titles = |page: &Value| -> Vec<String> {
        page["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["body"]["title"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(titles(&first), ["halt 2", "halt 1"], "{first}");
    let next = first["next"].as_str().expect("a next page");
    let (_, last) = daemon
        .get(&format!("/v1/decisions?limit=2&after={next}"))
        .await;
    assert_eq!(titles(&last), ["halt 0"], "{last}");
    assert!(last["next"].is_null(), "{last}");
    for bad in [
        "/v1/agents?limit=0",
        "/v1/alerts?after=zzz",
        "/v1/agents?after=nobody",
        "/v1/agents?limt=5",
    ] {
        let (status, body) = daemon.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_manifests_secrets_are_given_to_the_agent_and_never_served() {
    let daemon = Daemon::start().await;
    let manifest = "[config]\nshown = \"plain\"\n\n[secrets]\napi_key = \"sk-live-0123456789\"\n";
    daemon.push_ok("svc", "fixture-flaky", manifest).await;
    // The agent reads its secret as it reads its configuration.
    let (status, answer) = daemon.invoke("svc", json!({ "config": "api_key" })).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["output"]["value"], "sk-live-0123456789", "{answer}");
    let served = [
        daemon.get("/v1/agents/svc").await.1,
        daemon.get("/v1/agents/svc/versions").await.1,
        daemon.get("/v1/audit").await.1,
        daemon.get("/v1/events?limit=1000").await.1,
    ];
    for body in &served {
        let text = body.to_string();
        assert!(
            !text.contains("sk-live-0123456789"),
            "a secret served: {text}"
        );
    }
    assert_eq!(served[0]["manifest"]["secrets"]["api_key"], "<redacted>");
    assert_eq!(served[0]["manifest"]["config"]["shown"], "plain");
    // A key in both tables is refused.
    let both = "[config]\nkey = \"a\"\n\n[secrets]\nkey = \"b\"\n";
    let (status, body) = daemon
        .push("svc", component("fixture-flaky"), Some(both))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_manifest");
}

/// Deep shapes of Rust source, the ones that once overflowed a walk's stack and their
/// cousins, at and beyond every bound.
fn deep_shapes() -> Vec<(String, String)> {
    let mut shapes = Vec::new();
    for n in [500, 2000, 2001, 10_000] {
        shapes.push((
            format!("not_{n}"),
            format!("pub fn f() -> bool {{ {}true }}\n", "!".repeat(n)),
        ));
        shapes.push((
            format!("neg_{n}"),
            format!("pub fn f() -> i64 {{ {}1 }}\n", "-".repeat(n)),
        ));
        shapes.push((
            format!("sum_{n}"),
            format!("pub fn f() -> u32 {{ 1{} }}\n", " + 1".repeat(n)),
        ));
        shapes.push((
            format!("chain_{n}"),
            format!("pub fn f() {{ x{} }}\n", ".a()".repeat(n)),
        ));
        shapes.push((
            format!("generic_{n}"),
            format!("pub type T = {}u8{};\n", "Vec<".repeat(n), ">".repeat(n)),
        ));
        shapes.push((
            format!("closure_{n}"),
            format!("pub fn f() {{ let g = {}1; }}\n", "|| ".repeat(n)),
        ));
        shapes.push((
            format!("paren_{n}"),
            format!(
                "pub fn f() -> u32 {{ {}1{} }}\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
        ));
        shapes.push((
            format!("block_{n}"),
            format!("pub fn f() {{ {}{} }}\n", "{".repeat(n), "}".repeat(n)),
        ));
    }
    shapes
}

#[tokio::test]
async fn a_corpus_of_deep_shapes_in_live_source_leaves_the_daemon_up() {
    let daemon = Daemon::start().await;
    daemon.create_from_source("deep", "echo").await;
    // The shapes go live beside the crate (not modules of it, so the compiler never reads
    // them), where the analysis and every reader of source walk them.
    let files: serde_json::Map<String, Value> = deep_shapes()
        .into_iter()
        .map(|(name, text)| (format!("src/shapes/{name}.rs"), Value::String(text)))
        .collect();
    let count = files.len();
    let (status, edit) = daemon
        .post(
            "/v1/agents/deep/edits",
            json!({ "base_version": 1, "files": files, "reason": "deep shapes" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let edit = daemon.finished_edit("deep", &edit).await;
    assert_eq!(edit["state"], "live", "{edit}");

    let (status, analysis) = daemon.get("/v1/agents/deep/analysis").await;
    assert_eq!(status, StatusCode::OK, "{analysis}");
    let unparsed = analysis["unparsed"].as_array().expect("unparsed files");
    assert!(
        unparsed.len() >= count / 2,
        "the deepest shapes are reported unparsed: {analysis}"
    );
    // An agent granted `source` reads the findings and the files through the same walks.
    let manifest = "[capabilities]\ngrant = [\"source\"]\n";
    daemon.push_ok("prober", "fixture-prober", manifest).await;
    let (status, answer) = daemon
        .invoke("prober", json!({ "call": "findings", "agent": "deep" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["output"]["ok"].is_array(), "{answer}");
    let (status, health) = daemon.get("/v1/health").await;
    assert_eq!(status, StatusCode::OK, "the daemon is up: {health}");
    println!(
        "{count} deep shapes live: {} reported unparsed, none crashed the daemon",
        unparsed.len()
    );
}

/// A misspelt or mistyped field is refused with `invalid_request` (or `invalid_manifest`)
/// naming it, never read as a default: pushes, edits, alert resolutions and rollbacks.
#[tokio::test]
async fn misspelt_and_mistyped_fields_are_refused_naming_them() {
    let daemon = Daemon::start().await;
    daemon.push_agent("echo", "echo").await;
    let client = reqwest::Client::new();
    // A push's form part and a manifest's key.
    let form = reqwest::multipart::Form::new()
        .part(
            "component",
            reqwest::multipart::Part::bytes(component("echo")),
        )
        .text("manifset", "");
    let response = client
        .post(daemon.url("/v1/agents/echo/versions"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manifset"),
        "{body}"
    );
    let (status, body) = daemon
        .push("echo", component("echo"), Some("[limits]\nfeul = 5\n"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_manifest");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("feul"),
        "{body}"
    );
    // Bodies of edits, resolutions and rollbacks.
    for (path, sent, named) in [
        (
            "/v1/agents/echo/edits",
            r#"{"bse_version": 1, "diff": ""}"#,
            "bse_version",
        ),
        (
            "/v1/agents/echo/edits",
            r#"{"base_version": "1", "diff": ""}"#,
            "base_version",
        ),
        ("/v1/alerts/1/resolve", r#"{"reson": "fixed"}"#, "reson"),
        ("/v1/alerts/1/resolve", r#"{"reason": 5}"#, "reason"),
        ("/v1/agents/echo/rollback", r#"{"versoin": 1}"#, "versoin"),
        (
            "/v1/agents/echo/rollback",
            r#"{"version": null}"#,
            "version",
        ),
    ] {
        let (status, body) = daemon.post(path, sent.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {sent}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_request",
            "{path} {sent}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(named) || message.contains("invalid type"),
            "{path} {sent}: {body}"
        );
    }
    // Nothing moved: echo is still on its one version.
    assert_eq!(daemon.agent("echo").await["active_version"], 1);
}
