//! The web researcher against a loopback site: text and links, allowed origins only,
//! robots.txt obeyed, a rate limit kept, slow, binary and huge pages refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::header;
use axum::response::IntoResponse;
use std::time::{Duration, Instant};

use overseer_tests::{Daemon, FakeLlm, eventually, manifest};
use serde_json::{Value, json};

const INDEX: &str = r#"<html><head><title>Quarterly notes</title><style>p { color: red }</style></head>
<body><h1>ACME results</h1><p>Revenue   rose 12%.</p><script>var secret = "hidden";</script>
<a href="/a">A</a> <a href="/private/b">B</a> <a href="http://example.invalid/x">X</a>
<a href="/a#again">A again</a> <a href="mailto:ir@acme.invalid">mail</a></body></html>"#;

/// What a site was asked: how many times each path, and every request's path and time.
#[derive(Clone, Default)]
struct Hits {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    times: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Hits {
    fn of(&self, path: &str) -> u32 {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A site on loopback, and what it was asked.
async fn site() -> (String, Hits) {
    let hits = Hits::default();
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let hits = counted.clone();
        async move {
            *hits
                .counts
                .lock()
                .unwrap()
                .entry(uri.path().to_string())
                .or_default() += 1;
            hits.times
                .lock()
                .unwrap()
                .push((uri.path().to_string(), Instant::now()));
            let html = |body: String| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body);
            match uri.path() {
                "/robots.txt" => (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "User-agent: *\nDisallow: /private/\n".to_string(),
                )
                    .into_response(),
                "/" => html(INDEX.to_string()).into_response(),
                "/a" => {
                    html("<html><body><p>Page A text</p></body></html>".to_string()).into_response()
                }
                "/private/b" => html("<p>not for robots</p>".to_string()).into_response(),
                "/binary" => (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    vec![0u8, 159, 146, 150],
                )
                    .into_response(),
                // A page that never answers.
                "/slow" => std::future::pending().await,
                "/huge" => html("x".repeat(5 << 20)).into_response(),
                // Down once, then up.
                "/flaky" if hits.of("/flaky") == 1 => {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
                "/flaky" => html("<p>Back up</p>".to_string()).into_response(),
                "/down" => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                _ => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// The web researcher's manifest allowing `origin`, with `interval_ms` between requests.
fn allowing(origin: &str, interval_ms: u64) -> String {
    manifest("web-researcher")
        .replace("name = \"web-researcher\"", "")
        .replace("http_allow = []", &format!("http_allow = [\"{origin}\"]"))
        .replace(
            "min_interval_ms = \"1000\"",
            &format!("min_interval_ms = \"{interval_ms}\""),
        )
        .replace("timeout_ms = \"10000\"", "timeout_ms = \"500\"")
}

#[tokio::test]
async fn pages_are_read_politely_and_bad_ones_refused() {
    let (origin, hits) = site().await;
    let daemon = Daemon::start().await;
    daemon
        .push_ok("web-researcher", "web-researcher", &allowing(&origin, 0))
        .await;
    let read = |path: &str, follow: u64| {
        let url = format!("{origin}{path}");
        let daemon = &daemon;
        async move {
            daemon
                .invoke("web-researcher", json!({ "url": url, "follow": follow }))
                .await
        }
    };

    let (status, body) = read("/", 5).await;
    assert!(status.is_success(), "{body}");
    let page = &body["output"];
    assert_eq!(page["title"], "Quarterly notes");
    let text = page["text"].as_str().unwrap();
    assert!(text.contains("ACME results Revenue rose 12%."), "{text}");
    assert!(
        !text.contains("hidden") && !text.contains("color"),
        "{text}"
    );
    assert_eq!(
        page["links"],
        json!([
            format!("{origin}/a"),
            format!("{origin}/private/b"),
            "http://example.invalid/x"
        ])
    );
    let followed = page["followed"].as_array().unwrap();
    assert_eq!(followed[0]["text"], "Page A text");
    assert_eq!(
        followed[1]["error"], "denied",
        "robots.txt: {}",
        followed[1]
    );
    assert!(
        followed[1]["message"]
            .as_str()
            .unwrap()
            .contains("robots.txt")
    );
    assert_eq!(
        followed[2]["error"], "denied",
        "not an allowed origin: {}",
        followed[2]
    );
    let hit = |path: &str| hits.of(path);
    assert_eq!(hit("/private/b"), 0, "a disallowed path is never asked for");
    assert_eq!(hit("/robots.txt"), 1, "robots.txt is read once and kept");

    // A request refused before anything is sent is an error; a page asked for but not read
    // is an answer naming why.
    let code = |body: &Value| {
        body["error"]["code"]
            .as_str()
            .or(body["output"]["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (_, body) = read("/binary", 0).await;
    assert_eq!(code(&body), "invalid_input", "{body}");
    let (_, body) = read("/slow", 0).await;
    assert_eq!(code(&body), "unavailable", "{body}");
    let (_, body) = read("/huge", 0).await;
    assert_eq!(code(&body), "failed", "{body}");
    assert!(
        body["output"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{body}"
    );
    for sneaky in ["/private/b", "/%70rivate/b", "//private/b"] {
        let (_, body) = read(sneaky, 0).await;
        assert_eq!(code(&body), "denied", "{sneaky}: {body}");
    }
    assert_eq!(hit("/private/b"), 0, "a disallowed path is never asked for");
    assert_eq!(hit("/robots.txt"), 1);
    for bad in [
        json!({}),
        json!({ "url": "ftp://x/y" }),
        json!({ "url": "not a url" }),
    ] {
        let (_, body) = daemon.invoke("web-researcher", bad.clone()).await;
        assert_eq!(code(&body), "invalid_input", "{bad}: {body}");
    }

    // One request per host per interval (an agent of its own: its kv starts empty).
    daemon
        .push_ok("web-slow", "web-researcher", &allowing(&origin, 60_000))
        .await;
    let slow = || daemon.invoke("web-slow", json!({ "url": format!("{origin}/a") }));
    let (status, body) = slow().await;
    assert!(status.is_success(), "{body}");
    let (_, body) = slow().await;
    assert_eq!(code(&body), "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit"),
        "{body}"
    );
    daemon.stop().await;
}

/// A task's pages, through the web researcher: a site that is down once is asked again after
/// a backoff, the rate limit's interval is kept between requests, a site that stays down is
/// reported after its attempts, and the analysis is written from the pages read.
#[tokio::test]
async fn a_task_reads_its_pages_retrying_what_may_pass() {
    let (origin, hits) = site().await;
    let llm = FakeLlm::start(vec![
        "AAPL closed higher; the pages say revenue rose.".to_string(),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = llm.config(dir.path());
    let daemon = Daemon::start_with(config).await;
    daemon
        .push_ok(
            "web-researcher",
            "web-researcher",
            // A page's own timeout well above a loopback answer's time.
            &allowing(&origin, 200).replace("timeout_ms = \"500\"", "timeout_ms = \"5000\""),
        )
        .await;
    let executor =
        manifest("action-executor").replace("backoff_ms = \"250\"", "backoff_ms = \"100\"");
    daemon
        .push_ok("action-executor", "action-executor", &executor)
        .await;
    let urls: Vec<String> = ["/a", "/flaky", "/down"]
        .iter()
        .map(|p| format!("{origin}{p}"))
        .collect();
    let task = json!({ "id": "q-pages", "kind": "question", "symbols": ["AAPL"], "question": "what do the pages say?", "urls": urls });
    let (status, body) = daemon.invoke("action-executor", task).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["output"]["state"], "waiting for pages", "{body}");
    let result = eventually(Duration::from_secs(30), "the task's answer", || async {
        let (_, listed) = daemon.get("/v1/research/results").await;
        listed["results"]
            .as_array()?
            .iter()
            .find(|r| r["task"] == "q-pages")
            .cloned()
    })
    .await;
    let hit = |path: &str| hits.of(path);
    assert_eq!(hit("/flaky"), 2, "down once, asked again");
    assert_eq!(hit("/down"), 3, "three attempts, then reported");
    assert_eq!(hit("/a"), 1);
    // One request to the host per 200 ms: the pages' requests (robots.txt comes with the
    // first turn) are spaced by the interval, measured by the site's clock.
    let times: Vec<Instant> = hits
        .times
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path != "/robots.txt")
        .map(|(_, at)| *at)
        .collect();
    assert_eq!(times.len(), 6);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150),
            "{gap:?} between two requests"
        );
    }
    assert_eq!(result["status"], "partial", "{result}");
    let pages: Vec<&str> = result["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["excerpt"].as_str().unwrap())
        .collect();
    assert!(
        pages.contains(&"Page A text") && pages.contains(&"Back up"),
        "{result}"
    );
    let web = result["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "web")
        .unwrap();
    assert_eq!(web["status"], "failed", "{web}");
    assert_eq!(web["attempts"], 6, "1 + 2 + 3: {web}");
    assert_eq!(web["failed"][0]["url"], format!("{origin}/down"));
    assert!(
        web["message"].as_str().unwrap().contains("HTTP 500"),
        "{web}"
    );
    // The analysis is grounded in the numbers and the pages.
    assert_eq!(
        result["analysis"],
        "AAPL closed higher; the pages say revenue rose."
    );
    let prompt = llm.prompt(0);
    assert!(
        prompt.contains("Back up") && prompt.contains("return_1d"),
        "{prompt}"
    );
    daemon.stop().await;
}
