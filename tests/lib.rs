//! The harness of the integration tests: a real daemon on `127.0.0.1:0` with a temporary data
//! directory, driven through its HTTP API, and the agent components built once per run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A harness: failing loudly is its job.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use overseer::Config;
use overseer_kernel::Kernel;
use overseer_selfedit::builder;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The token every test daemon accepts.
pub const TOKEN: &str = "test-token";

/// A daemon's HTTP API, reached with the test token.
pub struct Api {
    pub url: String,
    pub client: reqwest::Client,
}

/// A daemon serving on loopback, in this process.
pub struct Daemon {
    pub api: Api,
    pub kernel: Kernel,
    pub daemon: overseer::Daemon,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

/// The configuration tests run with: a small instance pool, no bundled agents, and builds of
/// agent source in the target directory the test agents were built in, so they start warm.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        token: Some(TOKEN.to_string().into()),
        bundled: false,
        max_instances: 64,
        build_dir: Some(agents_target_dir()),
        tools_dir: Some(tools_dir()),
        ..Config::default()
    }
}

/// The database a test daemon keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data directory, the default.
    Sqlite,
    /// A database of its own on the tests' PostgreSQL server (see
    /// `overseer_store::testing`).
    Postgres,
}

/// [`test_config`] on `backend`: for PostgreSQL, a new database on the test server. The
/// configuration opens the same database again after a restart.
pub async fn config_on(data_dir: &Path, backend: Backend) -> Config {
    let mut config = test_config(data_dir);
    if backend == Backend::Postgres {
        config.database = Some(overseer_store::testing::database().await.into());
    }
    config
}

/// Generate one test per backend from `async fn name(backend: Backend)` functions of the
/// module it is called in: `on_sqlite::name` and `on_postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

impl Daemon {
    /// A daemon on a new temporary data directory.
    pub async fn start() -> Daemon {
        Daemon::start_on(Backend::Sqlite).await
    }

    /// A daemon on a new temporary data directory and a new database of `backend`.
    pub async fn start_on(backend: Backend) -> Daemon {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut daemon = Daemon::start_with(config_on(temp.path(), backend).await).await;
        daemon._temp = Some(temp);
        daemon
    }

    /// A daemon with this configuration (its data directory is the caller's to clean up).
    pub async fn start_with(config: Config) -> Daemon {
        let data_dir = config.data_dir.clone();
        let daemon = overseer::daemon::open(config)
            .await
            .expect("the daemon opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(overseer_api::serve(listener, daemon.state.clone(), async {
            let _ = stopped.await;
        }));
        Daemon {
            api: Api::new(url),
            kernel: daemon.kernel.clone(),
            daemon,
            data_dir,
            stop: Some(stop),
            server: Some(server),
            _temp: None,
        }
    }

    /// Start the market clock: one replayed day per `market_speed_ms`. Abort the handle to
    /// stop it.
    pub fn start_clock(&self) -> tokio::task::JoinHandle<()> {
        self.daemon
            .state
            .trading
            .as_ref()
            .expect("trading is on")
            .spawn_clock()
    }

    /// Stop serving and hand back the temporary data directory, if this daemon owned one.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self._temp.take()
    }
}

impl std::ops::Deref for Daemon {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn new(url: String) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
        Api {
            url,
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    /// GET `path` without the token.
    pub async fn get_anonymous(&self, path: &str) -> (StatusCode, Value) {
        send(reqwest::Client::new().get(self.url(path))).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Push a component, with a manifest when given (multipart), else as `application/wasm`.
    pub async fn push(
        &self,
        name: &str,
        bytes: Vec<u8>,
        manifest: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = self
            .client
            .post(self.url(&format!("/v1/agents/{name}/versions")))
            .bearer_auth(TOKEN);
        let request = match manifest {
            Some(manifest) => request.multipart(
                reqwest::multipart::Form::new()
                    .part("component", reqwest::multipart::Part::bytes(bytes))
                    .text("manifest", manifest.to_string()),
            ),
            None => request
                .header("content-type", "application/wasm")
                .body(bytes),
        };
        send(request).await
    }

    /// Push the component of an agent package of `agents/` as `name`, with `manifest`.
    pub async fn push_package(
        &self,
        name: &str,
        package: &str,
        manifest: &str,
    ) -> (StatusCode, Value) {
        self.push(name, component(package), Some(manifest)).await
    }

    /// Push a built agent with its own manifest; panics unless it goes live.
    /// `name` serving echo as version 1, stable, then `fixture-flaky` as version 2 failing
    /// three of its watch window's calls: the host rolls it back and opens a `rollback` alert.
    /// Answers once version 2's verdict is in.
    pub async fn failing_watch_window(&self, name: &str) {
        self.push_ok(
            name,
            "echo",
            "[deploy]\nwatch_calls = 5\nmin_calls = 3\nwatch = \"20s\"\n",
        )
        .await;
        for n in 0..5 {
            self.call_ok(name, serde_json::json!({ "n": n })).await;
        }
        self.wait_verdict(name, 1, "stable").await;
        let (status, body) = self.push(name, component("fixture-flaky"), None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for _ in 0..3 {
            self.invoke(name, serde_json::json!({ "fail": "error" }))
                .await;
        }
        self.wait_verdict(name, 2, "rolled-back").await;
    }

    pub async fn push_agent(&self, name: &str, package: &str) -> Value {
        let manifest = manifest(package).replace(
            &format!("name = \"{}\"", manifest_name(package)),
            &format!("name = \"{name}\""),
        );
        let (status, body) = self.push(name, component(package), Some(&manifest)).await;
        assert!(
            status.is_success(),
            "push of {package} as {name}: {status} {body}"
        );
        body
    }

    /// Create agent `name` from the source of an agent package, through the edit API; panics
    /// unless it goes live. Returns the finished edit.
    pub async fn create_from_source(&self, name: &str, package: &str) -> Value {
        let mut files = serde_json::Map::new();
        let dir = built().dirs.get(package).expect("package directory");
        for path in ["Cargo.toml", "agent.toml", "src/lib.rs"] {
            let text = std::fs::read_to_string(dir.join(path)).expect("read source");
            let text = if path == "agent.toml" {
                text.replace(
                    &format!("name = \"{}\"", manifest_name(package)),
                    &format!("name = \"{name}\""),
                )
            } else {
                text
            };
            files.insert(path.to_string(), Value::String(text));
        }
        let body = serde_json::json!({ "files": files, "reason": "create from source" });
        let (status, edit) = self
            .post(&format!("/v1/agents/{name}/edits"), body.to_string())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
        // Listed from the start, while the agent has no record yet.
        let (status, edits) = self.get(&format!("/v1/agents/{name}/edits")).await;
        assert_eq!(status, StatusCode::OK, "{edits}");
        assert_eq!(edits["edits"][0]["id"], edit["id"], "{edits}");
        let edit = self.finished_edit(name, &edit).await;
        assert_eq!(edit["state"], "live", "{edit}");
        edit
    }

    /// Wait for an edit to leave `applying`, `building` and `checking`.
    pub async fn finished_edit(&self, name: &str, edit: &Value) -> Value {
        let path = format!("/v1/agents/{name}/edits/{}", edit["id"]);
        eventually(Duration::from_secs(600), "the edit to finish", || async {
            let (_, edit) = self.get(&path).await;
            let state = edit["state"].as_str().unwrap_or_default().to_string();
            (!["applying", "building", "checking"].contains(&state.as_str())).then_some(edit)
        })
        .await
    }

    pub async fn invoke(&self, name: &str, payload: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/agents/{name}/invoke"), payload.to_string())
            .await
    }

    pub async fn post(&self, path: &str, body: String) -> (StatusCode, Value) {
        send(
            self.client
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// The Prometheus text at `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request reaches the daemon")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.client.get(self.url(path))).await
    }

    /// Every item of the list `list` at `path` (a path with its query), read page by page
    /// through `after` and `next`.
    pub async fn every(&self, path: &str, list: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut after = String::new();
        loop {
            let (status, page) = self.get(&format!("{path}{after}")).await;
            assert_eq!(status, StatusCode::OK, "{path}{after}: {page}");
            items.extend(page[list].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return items,
            }
        }
    }

    /// PUT `body` as JSON to `path`.
    pub async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.client.put(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send(self.client.delete(self.url(path)).bearer_auth(TOKEN)).await
    }

    /// Push an agent package with `manifest`; panics unless it goes live as a new version.
    pub async fn push_ok(&self, name: &str, package: &str, manifest: &str) -> Value {
        let (status, body) = self.push(name, component(package), Some(manifest)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "push of {package} as {name}: {body}"
        );
        body
    }

    /// Push a copy of an agent package's component made distinct by `tag` (see
    /// [`overseer::bench::tagged`]), with `manifest`; panics unless it goes live as a new
    /// version.
    pub async fn push_tagged_ok(
        &self,
        name: &str,
        package: &str,
        tag: &str,
        manifest: &str,
    ) -> Value {
        let bytes = overseer::bench::tagged(&component(package), tag);
        let (status, body) = self.push(name, bytes, Some(manifest)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "push of {package} ({tag}) as {name}: {body}"
        );
        body
    }

    /// Invoke and expect an answer; returns the version that answered.
    pub async fn call_ok(&self, name: &str, payload: Value) -> u64 {
        let (status, body) = self.invoke(name, payload).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["version"]
            .as_u64()
            .expect("the answer names its version")
    }

    /// Version `number` of an agent, as `GET …/versions` shows it.
    pub async fn version(&self, name: &str, number: u64) -> Value {
        let (_, body) = self.get(&format!("/v1/agents/{name}/versions")).await;
        body["versions"]
            .as_array()
            .and_then(|versions| versions.iter().find(|v| v["number"] == number))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Wait until version `number` has `verdict`.
    pub async fn wait_verdict(&self, name: &str, number: u64, verdict: &str) -> Value {
        eventually(WAIT, &format!("v{number} verdict {verdict}"), || async {
            let v = self.version(name, number).await;
            (v["verdict"] == verdict).then_some(v)
        })
        .await
    }

    /// The alerts `query` selects (`state=open&agent=svc`), newest first.
    pub async fn alerts(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/alerts?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Wait for an alert of `kind` among those `query` selects.
    pub async fn alert_of(&self, query: &str, kind: &str) -> Value {
        eventually(WAIT, &format!("a {kind} alert"), || async {
            self.alerts(query)
                .await
                .into_iter()
                .find(|a| a["type"] == kind)
        })
        .await
    }

    /// The agent as `GET /v1/agents/{name}` shows it.
    pub async fn agent(&self, name: &str) -> Value {
        self.get(&format!("/v1/agents/{name}")).await.1
    }
}

/// How long tests wait for the host to act: far more than it takes, so a slow machine does
/// not fail a test, and a host that never acts does.
pub const WAIT: Duration = Duration::from_secs(20);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request reaches the daemon");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

struct Built {
    wasm: HashMap<String, Vec<u8>>,
    dirs: HashMap<String, PathBuf>,
}

/// The agents workspace of this source tree.
pub fn agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents")
}

/// Where the agents are built for the tests: next to the test binary,
/// `<target>/debug/deps/all-…` → `<target>/agents`.
pub fn agents_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
        .join("agents")
}

/// Where the tests install componentizers, once for every run: `<target>/tools`.
pub fn tools_dir() -> PathBuf {
    agents_target_dir()
        .parent()
        .map(|target| target.join("tools"))
        .unwrap_or_else(|| std::env::temp_dir().join("overseer-tools"))
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let build = builder::build_rust(
            &agents_dir(),
            &agents_target_dir(),
            &[],
            Duration::from_secs(1200),
            overseer_selfedit::Isolation::Required,
        )
        .unwrap_or_else(|e| panic!("building the agents: {e}"));
        let mut wasm = HashMap::new();
        let mut dirs = HashMap::new();
        for artifact in build.artifacts {
            wasm.insert(artifact.package.clone(), artifact.bytes);
            dirs.insert(artifact.package, artifact.dir);
        }
        Built { wasm, dirs }
    })
}

/// The component of an agent package of `agents/` (e.g. `echo`, `fixture-spin`).
pub fn component(package: &str) -> Vec<u8> {
    built()
        .wasm
        .get(package)
        .unwrap_or_else(|| panic!("no component for {package}"))
        .clone()
}

/// A file of an agent package's source (`src/lib.rs`).
pub fn package_file(package: &str, path: &str) -> String {
    let dir = built()
        .dirs
        .get(package)
        .unwrap_or_else(|| panic!("no directory for {package}"));
    std::fs::read_to_string(dir.join(path)).expect("read the package's file")
}

/// The `agent.toml` of an agent package.
pub fn manifest(package: &str) -> String {
    let dir = built()
        .dirs
        .get(package)
        .unwrap_or_else(|| panic!("no directory for {package}"));
    std::fs::read_to_string(dir.join("agent.toml")).expect("read agent.toml")
}

fn manifest_name(package: &str) -> String {
    let text = manifest(package);
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("name")
                .and_then(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| package.to_string())
}

/// The check of `step` (`validate`, `describe`, `health`, `canary`) in a version record or a
/// push's answer.
pub fn check(version: &Value, step: &str) -> Value {
    version["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["step"] == step))
        .cloned()
        .unwrap_or_else(|| panic!("no {step} check in {version}"))
}

/// A plain core module, not a component.
pub fn core_module() -> Vec<u8> {
    wat::parse_file(agents_dir().join("fixtures/core-module.wat")).expect("core module parses")
}

/// Poll `check` until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fake OpenAI-compatible chat-completions endpoint on loopback: it answers from a script,
/// in order (the last answer repeats), and keeps every request it was sent.
pub struct FakeLlm {
    /// Base URL to configure as the LLM endpoint (`http://127.0.0.1:PORT/v1`).
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeLlm {
    /// Answers `answers` in order; the last repeats.
    pub async fn start(answers: Vec<String>) -> FakeLlm {
        let script = Mutex::new(VecDeque::from(answers));
        FakeLlm::answering(move |_| {
            let mut script = script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap_or_default()
            } else {
                script.front().cloned().unwrap_or_default()
            }
        })
        .await
    }

    /// Answers each request with `answer(request)`: an outcome model of the prompt it is sent.
    pub async fn answering(answer: impl Fn(&Value) -> String + Send + Sync + 'static) -> FakeLlm {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let seen = requests.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                let answer = answer.clone();
                async move {
                    let model = body["model"].clone();
                    let text = answer(&body);
                    seen.lock().unwrap().push(body);
                    axum::Json(serde_json::json!({
                        "model": model,
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text } }],
                        "usage": { "prompt_tokens": 120, "completion_tokens": 30 },
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeLlm { url, requests }
    }

    /// [`test_config`] with this endpoint as the daemon's model (`fake-model`).
    pub fn config(&self, data_dir: &Path) -> Config {
        let mut config = test_config(data_dir);
        config.llm.url = Some(self.url.clone());
        config.llm.model = "fake-model".to_string();
        config
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The text of every message of request `n`, joined.
    pub fn prompt(&self, n: usize) -> String {
        self.requests()
            .get(n)
            .and_then(|r| r["messages"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["content"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// p50 and p99 of durations, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    let s = overseer::bench::summarize(samples);
    (s.p50 / 1000.0, s.p99 / 1000.0)
}

/// `overseer drill NAME --fault FAULT` against `daemon`, with the fixtures built for the tests.
pub async fn drill(daemon: &Daemon, name: &str, fault: &str) -> overseer::drill::Report {
    use clap::Parser;
    let agents = agents_dir();
    let build = agents_target_dir();
    let cli = overseer::cli::Cli::try_parse_from([
        "overseer",
        "drill",
        name,
        "--fault",
        fault,
        "--url",
        &daemon.url,
        "--token",
        TOKEN,
        "--agents-dir",
        agents.to_str().expect("a UTF-8 path"),
        "--build-dir",
        build.to_str().expect("a UTF-8 path"),
    ])
    .expect("a drill's arguments");
    let overseer::cli::Command::Drill(args) = cli.command else {
        panic!("parsed as drill");
    };
    overseer::drill::run(args).await.expect("the drill runs")
}
