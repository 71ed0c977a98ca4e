//! Crash safety: the daemon, run as a separate process, is killed with SIGKILL at a random
//! moment of a push, again and again. After each restart every agent has exactly one active
//! version, that version answers, and no version row points at a missing component.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use overseer::bench::tagged;
use overseer_store::Store;
use overseer_tests::{Api, TOKEN, component};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ROUNDS: u32 = 20;

/// `overseer serve` as a child process on a port of its choosing.
struct Process {
    api: Api,
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Process {
    fn start(data_dir: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_overseer-daemon"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--no-bundled", "--token", TOKEN])
            .arg("--data-dir")
            .arg(data_dir)
            .env("OVERSEER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the daemon starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the daemon prints");
        let url = line
            .trim()
            .strip_prefix("overseer listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Process {
            api: Api::new(url),
            child,
            _stdout: stdout,
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small xorshift generator: the kill moments are random, and reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// A push that may be cut short by the kill: `None` when the daemon died before answering.
async fn push(api: &Api, name: &str, bytes: Vec<u8>) -> Option<(StatusCode, Value)> {
    let response = api
        .client
        .post(api.url(&format!("/v1/agents/{name}/versions")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

/// Every agent has one active version, of a component the store holds, and it answers.
async fn assert_consistent(api: &Api, data_dir: &Path, context: &str) -> Vec<String> {
    let store = Store::sqlite(&data_dir.join("overseer.db"))
        .await
        .expect("store opens");
    let dangling = store.dangling_versions().await.unwrap();
    assert!(dangling.is_empty(), "{context}: dangling {dangling:?}");

    let (_, body) = api.get("/v1/agents").await;
    let mut names = Vec::new();
    for agent in body["agents"].as_array().unwrap() {
        let name = agent["name"].as_str().unwrap().to_string();
        let active = agent["active_version"]
            .as_u64()
            .unwrap_or_else(|| panic!("{context}: {name} has no active version: {agent}"));
        assert_eq!(agent["state"], "active", "{context}: {agent}");

        let (_, versions) = api.get(&format!("/v1/agents/{name}/versions")).await;
        let actives: Vec<&Value> = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["state"] == "active")
            .collect();
        assert_eq!(actives.len(), 1, "{context}: {name}: {versions}");
        assert_eq!(actives[0]["number"], active, "{context}: {name}");
        assert_eq!(
            actives[0]["digest"], agent["digest"],
            "{context}: {name} serves the component its active version names"
        );

        let (status, answer) = api.invoke(&name, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{context}: {name}: {answer}");
        assert_eq!(answer["version"], active, "{context}: {name}");
        names.push(name);
    }
    names
}

#[tokio::test]
async fn sigkill_during_pushes_never_leaves_a_broken_agent() {
    let seed = std::env::var("OVERSEER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("crash loop seed {seed} (OVERSEER_CRASH_SEED reproduces it)");
    let mut rng = Rng(seed);
    let echo = component("echo");
    let counter = component("counter");
    let dir = tempfile::tempdir().unwrap();

    // One push that runs to its end, to know how long a push takes on this machine.
    let daemon = Process::start(dir.path());
    let started = Instant::now();
    let (status, _) = push(&daemon.api, "steady", tagged(&echo, "0"))
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::CREATED);
    let push_time = started.elapsed();
    daemon.kill();

    let (mut completed, mut cut) = (0, 0);
    // Versions whose push was answered before the kill: each must be active after the restart.
    let mut answered: Vec<(String, u64)> = Vec::new();
    for round in 1..=ROUNDS {
        let daemon = Process::start(dir.path());
        let context = format!("after round {}", round - 1);
        assert_consistent(&daemon.api, dir.path(), &context).await;
        for (name, version) in answered.drain(..) {
            let (_, agent) = daemon.api.get(&format!("/v1/agents/{name}")).await;
            assert_eq!(
                agent["active_version"], version,
                "{context}: an answered push is durable: {agent}"
            );
        }

        // A new version of an existing agent and the first version of a new one, in flight
        // together, and the daemon killed somewhere between their start and a little past
        // their end (two pushes at once take about twice as long as one).
        let kill_after = Duration::from_micros(rng.below(push_time.as_micros() as u64 * 3));
        let api = Api::new(daemon.api.url.clone());
        let next = tagged(&echo, &round.to_string());
        let fresh = tagged(&counter, &round.to_string());
        let mut pushes = tokio::spawn(async move {
            let fresh_name = format!("fresh-{round}");
            tokio::join!(push(&api, "steady", next), push(&api, &fresh_name, fresh))
        });
        // Kill at `kill_after`, or as soon as both pushes are answered if that is sooner.
        let in_time = tokio::time::timeout(kill_after, &mut pushes).await;
        daemon.kill();
        let (a, b) = match in_time {
            Ok(done) => done.unwrap(),
            Err(_) => pushes.await.unwrap(),
        };
        for outcome in [a, b] {
            match outcome {
                Some((status, body)) => {
                    assert_eq!(status, StatusCode::CREATED, "round {round}: {body}");
                    answered.push((
                        body["agent"].as_str().unwrap().to_string(),
                        body["version"].as_u64().unwrap(),
                    ));
                    completed += 1;
                }
                None => cut += 1,
            }
        }
    }

    let daemon = Process::start(dir.path());
    let agents = assert_consistent(&daemon.api, dir.path(), "after the last round").await;
    println!(
        "one push took {push_time:?}; {ROUNDS} kills; pushes answered before the kill: {completed}, cut short: {cut}; \
         agents after the last restart: {}",
        agents.len()
    );
    assert!(agents.contains(&"steady".to_string()));
    daemon.kill();
}
