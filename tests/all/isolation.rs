//! Builds run isolated: a person's edit whose build script and procedural macro try every
//! escape — the token, the compile cache's key, the database, the compile cache, the daemon's
//! port, a Unix socket beside them, every process's environment, a process left running in a session of its own — and
//! whose source reads the token through `#[cfg_attr(…, path)]` and the LLM key through `env!`,
//! against a daemon run as its own process with an LLM key in its environment. Every attempt
//! is made (the build log says so) and fails, and neither secret appears in any answer of the
//! API.

use std::path::Path;
use std::time::Duration;

use overseer_tests::eventually;
use serde_json::{Value, json};

use crate::process::{Process, build_settings};

const LLM_KEY: &str = "sk-llm-key-8c1f9e5b2a";

/// What the build script and the macro both try; `DATA` and `ADDR` are filled in.
const ATTACKS: &str = r#"
fn attacks(who: &str) -> String {
    let mut out = format!("[{who}]");
    let mut note = |what: &str, result: std::io::Result<String>| match result {
        Ok(value) => out.push_str(&format!(" {what}=OPEN:{value}")),
        Err(e) => out.push_str(&format!(" {what}=DENIED({:?})", e.kind())),
    };
    note("token", std::fs::read_to_string("DATA/token"));
    note("cache-key", std::fs::read("DATA/cache.key").map(|k| format!("{k:?}")));
    note(
        "database",
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("DATA/overseer.db")
            .map(|_| "writable".to_string()),
    );
    note(
        "cache",
        std::fs::write("DATA/cache/planted.cwasm", b"native code").map(|_| "written".to_string()),
    );
    note(
        "connect",
        std::net::TcpStream::connect("ADDR").map(|_| "connected".to_string()),
    );
    note(
        "unix-socket",
        std::os::unix::net::UnixStream::connect("DATA/probe.sock").map(|_| "connected".to_string()),
    );
    let mut environments = String::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read(entry.path().join("environ")) {
            let text = String::from_utf8_lossy(&text).replace('\0', " ");
            if text.contains("OVERSEER") {
                environments.push_str(&text);
            }
        }
    }
    note(
        "environ",
        if environments.is_empty() {
            Err(std::io::ErrorKind::PermissionDenied.into())
        } else {
            Ok(environments)
        },
    );
    let own: Vec<String> = std::env::vars()
        .map(|(name, value)| format!("{name}={value}"))
        .filter(|var| var.contains("OVERSEER"))
        .collect();
    note("own-env", Ok(own.join(",")));
    note(
        "nested-namespace",
        std::process::Command::new("unshare")
            .args(["-U", "true"])
            .stderr(std::process::Stdio::null())
            .status()
            .and_then(|status| match status.success() {
                true => Ok("made".to_string()),
                false => Err(std::io::ErrorKind::PermissionDenied.into()),
            }),
    );
    // A link the next build's files would be written through, if the daemon kept them.
    note(
        "plant",
        std::os::unix::fs::symlink(
            "VICTIM",
            format!("{}/notes.txt", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()),
        )
        .map(|_| "planted".to_string()),
    );
    note(
        "escape",
        std::process::Command::new("setsid")
            .args(["-f", "sleep", "313"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|status| status.to_string()),
    );
    out
}
"#;

/// `overseer serve` as its own process, with a generated token and an LLM key in its
/// environment.
struct Daemon {
    process: Process,
    token: String,
}

impl Daemon {
    fn start(data_dir: &Path) -> Daemon {
        let process = Process::start(data_dir, &build_settings(), |daemon| {
            daemon
                .env_remove("OVERSEER_TOKEN")
                .env("OVERSEER_LLM_KEY", LLM_KEY);
        });
        let token = std::fs::read_to_string(data_dir.join("token"))
            .expect("a generated token")
            .trim()
            .to_string();
        assert!(token.len() >= 32, "a generated token is long");
        Daemon { process, token }
    }

    /// Propose a new agent's source as a person would, and wait for the edit to finish.
    async fn edit(&self, name: &str, files: Value) -> Value {
        let created = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/agents/{name}/edits"),
                Some(json!({ "files": files, "reason": "an attack" })),
            )
            .await;
        let created: Value = serde_json::from_str(&created).expect("an edit");
        let id = created["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{created}"));
        let path = format!("/v1/agents/{name}/edits/{id}");
        eventually(Duration::from_secs(600), "the edit to finish", || async {
            let text = self.request(reqwest::Method::GET, &path, None).await;
            let edit: Value = serde_json::from_str(&text).ok()?;
            let state = edit["state"].as_str().unwrap_or_default().to_string();
            (!["applying", "building", "checking"].contains(&state.as_str())).then_some(edit)
        })
        .await
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> String {
        let mut request = reqwest::Client::new()
            .request(method, self.process.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the daemon answers");
        response.text().await.expect("an answer")
    }
}

/// Processes whose command line is `sleep 313`: what the attack tried to leave running.
fn escapees() -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|line| line == b"sleep\x00313\x00")
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_build_reaches_nothing_of_the_host() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().canonicalize().expect("canonical data dir");
    let daemon = Daemon::start(&data_dir);
    // A socket file, as a local PostgreSQL would listen on.
    let _listener =
        std::os::unix::net::UnixListener::bind(data_dir.join("probe.sock")).expect("a socket");
    let addr = daemon.process.url.trim_start_matches("http://").to_string();
    // A file of the daemon's user the attack tries to have the daemon overwrite.
    let outside = tempfile::tempdir().expect("temp dir");
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "untouched").expect("victim");
    let attacks = ATTACKS
        .replace("VICTIM", &victim.to_string_lossy())
        .replace("DATA", &data_dir.to_string_lossy())
        .replace("ADDR", &addr);

    let files = json!({
        "Cargo.toml": "[package]\nname = \"attack\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                       [lib]\ncrate-type = [\"cdylib\"]\n\n\
                       [dependencies]\nevil = { path = \"evil\" }\n",
        "agent.toml": "name = \"attack\"\n",
        "build.rs": format!(
            "{attacks}\nfn main() {{\n    println!(\"cargo:warning={{}}\", attacks(\"build.rs\"));\n}}\n"
        ),
        "src/lib.rs": "evil::probe!();\npub const KEY: &str = env!(\"OVERSEER_LLM_KEY\");\n",
        "evil/Cargo.toml": "[package]\nname = \"evil\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                            [lib]\nproc-macro = true\n",
        "evil/src/lib.rs": format!(
            "extern crate proc_macro;\n{attacks}\n\
             #[proc_macro]\npub fn probe(_: proc_macro::TokenStream) -> proc_macro::TokenStream {{\n    \
             format!(\"compile_error!({{:?}});\", attacks(\"proc-macro\")).parse().unwrap()\n}}\n"
        ),
    });
    let edit = daemon.edit("attack", files.clone()).await;
    let log = edit.to_string();
    println!("{}", edit["build_log"].as_str().unwrap_or_default());
    assert_eq!(edit["state"], "rejected", "{log}");

    // Both ran every attempt, and every attempt failed.
    for who in ["[build.rs]", "[proc-macro]"] {
        let report = log
            .split(who)
            .nth(1)
            .unwrap_or_else(|| panic!("{who} did not run: {log}"));
        for attempt in [
            "token=DENIED",
            "cache-key=DENIED",
            "database=DENIED",
            "cache=DENIED",
            "connect=DENIED",
            "unix-socket=DENIED",
            "nested-namespace=DENIED",
            "environ=DENIED",
            "own-env=OPEN:",
        ] {
            assert!(report.contains(attempt), "{who} {attempt}: {report}");
        }
    }
    assert!(
        log.contains("environment variable `OVERSEER_LLM_KEY` not defined"),
        "env! was tried: {log}"
    );
    assert!(!data_dir.join("cache/planted.cwasm").exists());
    let first_planted = log.contains("plant=OPEN:planted");

    // Whatever the build left running went with it.
    let left = eventually(
        Duration::from_secs(10),
        "the build's processes gone",
        || async {
            let left = escapees();
            left.is_empty().then_some(left)
        },
    )
    .await;
    assert!(left.is_empty());

    // A module read from the token file through `cfg_attr`: the read is refused.
    let mut files = files;
    files["src/lib.rs"] = json!(format!(
        "#[cfg_attr(all(), path = \"{}/token\")]\nmod stolen;\n",
        data_dir.display()
    ));
    // The next build's files, written where the last build planted a link.
    files["notes.txt"] = json!("overwritten");
    files["Cargo.toml"] = json!(
        "[package]\nname = \"attack\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n"
    );
    let edit = daemon.edit("attack", files).await;
    let log = edit.to_string();
    assert_eq!(edit["state"], "rejected", "{log}");
    assert!(
        log.contains("couldn't read") && log.contains("Permission denied"),
        "the #[path] read was tried and refused: {log}"
    );
    assert!(first_planted, "the first build planted its link");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "untouched",
        "the daemon wrote through a link a build left"
    );

    // Neither secret is anywhere the API shows.
    for path in [
        "/v1/agents/attack/edits".to_string(),
        "/v1/events?limit=10000".to_string(),
        "/v1/alerts?state=all".to_string(),
        "/v1/agents".to_string(),
        "/v1/system".to_string(),
        "/v1/limits".to_string(),
        "/metrics".to_string(),
    ] {
        let text = daemon.request(reqwest::Method::GET, &path, None).await;
        assert!(!text.contains(&daemon.token), "the token in {path}");
        assert!(!text.contains(LLM_KEY), "the LLM key in {path}");
    }
}

/// Processes whose command line is `sleep <seconds>`.
fn sleeping(seconds: &str) -> usize {
    let wanted = format!("sleep\x00{seconds}\x00");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|line| line == wanted.as_bytes())
        })
        .count()
}

#[test]
fn a_build_past_its_timeout_is_killed_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"slow\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/lib.rs"), "").unwrap();
    // A build script that starts a process of its own in a new session, then never ends.
    std::fs::write(
        root.join("build.rs"),
        "fn main() {\n    let _ = std::process::Command::new(\"setsid\")\n        .args([\"-f\", \"sleep\", \"317\"])\n        .stdin(std::process::Stdio::null())\n        .stdout(std::process::Stdio::null())\n        .stderr(std::process::Stdio::null())\n        .status();\n    loop {\n        std::thread::sleep(std::time::Duration::from_secs(1));\n    }\n}\n",
    )
    .unwrap();
    let timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let result = overseer_selfedit::builder::build_rust(
        root,
        &root.join("target"),
        &[],
        timeout,
        overseer_selfedit::Isolation::Required,
    );
    let elapsed = started.elapsed();
    println!(
        "a never-ending build stopped after {:.1} s (timeout {} s)",
        elapsed.as_secs_f64(),
        timeout.as_secs()
    );
    let error = result.expect_err("the build cannot finish").to_string();
    assert!(error.contains("longer than"), "{error}");
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(sleeping("317"), 0, "the build script's process outlived it");
}
