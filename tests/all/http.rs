//! Capabilities: the `http` interface reaches only the origins a manifest allows, shadow runs
//! send no request, and a push lists the component's imports against its grants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use overseer_tests::Daemon;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A server on loopback that answers `hello` on `/`, a redirect on `/away`, 5 MiB on `/big`,
/// and counts its requests.
async fn server() -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let app = axum::Router::new()
        .route("/", axum::routing::any(|| async { "hello" }))
        .route(
            "/away",
            axum::routing::get(|| async {
                (
                    StatusCode::FOUND,
                    [("location", "http://127.0.0.1:9/elsewhere")],
                )
            }),
        )
        .route("/big", axum::routing::get(|| async { "x".repeat(5 << 20) }))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn prober_manifest(name: &str, grant: &str, allow: &[&str]) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "name = \"{name}\"\n[capabilities]\ngrant = [{grant}]\nhttp_allow = [{}]\n",
        allow.join(", ")
    )
}

async fn fetch(daemon: &Daemon, agent: &str, url: &str) -> Value {
    let (status, body) = daemon
        .invoke(agent, json!({ "call": "fetch", "url": url }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["output"].clone()
}

#[tokio::test]
async fn http_reaches_only_the_allowed_origins() {
    let (allowed, hits) = server().await;
    let (other, other_hits) = server().await;
    let daemon = Daemon::start().await;
    let manifest = prober_manifest("fetcher", "\"http\"", &[&allowed]);
    let (status, pushed) = daemon
        .push_package("fetcher", "fixture-prober", &manifest)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pushed}");

    // The push lists what the component imports against what the manifest grants.
    let imports = pushed["imports"].as_array().unwrap();
    let granted = |interface: &str| {
        imports
            .iter()
            .find(|i| i["interface"] == interface)
            .map(|i| i["granted"].clone())
    };
    assert_eq!(granted("http"), Some(json!(true)), "{imports:?}");
    assert_eq!(granted("llm"), Some(json!(false)));
    assert_eq!(granted("source"), Some(json!(false)));
    assert_eq!(granted("runtime"), Some(json!(true)));

    let answer = fetch(&daemon, "fetcher", &format!("{allowed}/")).await;
    assert_eq!(
        answer["ok"],
        json!({ "status": 200, "body": "hello" }),
        "{answer}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Another port on the same host is another origin.
    let answer = fetch(&daemon, "fetcher", &format!("{other}/")).await;
    assert_eq!(answer["error"], "denied", "{answer}");
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    // A redirect is the answer, not a hop the host takes.
    let answer = fetch(&daemon, "fetcher", &format!("{allowed}/away")).await;
    assert_eq!(answer["ok"]["status"], 302, "{answer}");
    // An answer over the limit is refused, not buffered.
    let answer = fetch(&daemon, "fetcher", &format!("{allowed}/big")).await;
    assert_eq!(answer["error"], "failed", "{answer}");
    // The origin is the URL's: no Host of the agent's choosing.
    let (status, body) = daemon
        .invoke(
            "fetcher",
            json!({ "call": "fetch", "url": format!("{allowed}/"), "headers": { "Host": "elsewhere.test" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["error"], "invalid_input", "{body}");
    // Not a URL at all.
    let answer = fetch(&daemon, "fetcher", "not a url").await;
    assert_eq!(answer["error"], "invalid_input", "{answer}");

    // Allowed origins, but no grant: denied before anything is sent.
    let manifest = prober_manifest("ungranted", "", &[&allowed]);
    let (status, body) = daemon
        .push_package("ungranted", "fixture-prober", &manifest)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = hits.load(Ordering::SeqCst);
    let answer = fetch(&daemon, "ungranted", &format!("{allowed}/")).await;
    assert_eq!(answer["error"], "denied", "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("grant"));

    // A new version's canary replays the calls above in shadow: no request leaves the host.
    let again = prober_manifest("fetcher", "\"http\"", &[&allowed]).replacen(
        '\n',
        "\ndescription = \"again\"\n",
        1,
    );
    let (status, body) = daemon
        .push_package("fetcher", "fixture-prober", &again)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(overseer_tests::check(&body, "canary")["ok"], true, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn a_manifest_must_name_origins_to_allow() {
    let daemon = Daemon::start().await;
    for allow in [
        "example.com",
        "https://example.com/path",
        "ftp://example.com",
    ] {
        let manifest = prober_manifest("bad", "\"http\"", &[allow]);
        let (status, body) = daemon
            .push_package("bad", "fixture-prober", &manifest)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{allow}: {body}");
        assert_eq!(body["error"]["code"], "invalid_manifest");
    }
    let manifest = prober_manifest("bad", "\"https\"", &[]);
    let (status, body) = daemon
        .push_package("bad", "fixture-prober", &manifest)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("https"));
}
