//! Crash safety: the daemon, run as a separate process, is killed with SIGKILL at a random
//! moment, again and again, on each backend: in the middle of two concurrent pushes, of an
//! edit built from source, and of a failing version's watch-window rollback. After each
//! restart every agent has exactly one active version, which answers and is the one the store
//! names; no version row points at a missing component; no edit is left under way, and every
//! version an edit built says so on a live edit; no active version carries a verdict that
//! condemns it; the working copy holds the active source; and every push answered before the
//! kill is durable.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use overseer::bench::tagged;
use overseer_store::{EditState, Origin, Store, VersionState};
use overseer_tests::{Api, Backend, TOKEN, component};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::process::{Process, build_settings};

/// Kills per backend.
const ROUNDS: u32 = 50;

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

/// A request that may be cut short by the kill: `None` when the daemon died before answering.
async fn send(request: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
    let response = request.send().await.ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

async fn push(
    api: &Api,
    name: &str,
    bytes: Vec<u8>,
    manifest: Option<&str>,
) -> Option<(StatusCode, Value)> {
    let request = api
        .client
        .post(api.url(&format!("/v1/agents/{name}/versions")))
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

async fn post(api: &Api, path: &str, body: Value) -> Option<(StatusCode, Value)> {
    send(
        api.client
            .post(api.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

/// What each round puts in flight when the kill comes.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// A new version of an existing agent and the first version of a new one, together.
    Pushes,
    /// An edit of an agent built from source.
    Edit,
    /// A failing version pushed in front of a stable one, and the calls that make its watch
    /// window roll it back.
    Rollback,
}

const WORK: [Work; 3] = [Work::Pushes, Work::Edit, Work::Rollback];

/// The manifest of the agent whose failing versions are rolled back.
const WATCHED: &str = "[deploy]\nwatch_calls = 3\nmin_calls = 3\n";
const FAILING: &str = "[deploy]\nwatch_calls = 100\nmin_calls = 3\n";

/// Start `work` in round `round`; the answers of pushes it made, when they came.
async fn run(work: Work, api: Api, round: u32) -> Vec<Option<(StatusCode, Value)>> {
    match work {
        Work::Pushes => {
            let next = tagged(&component("echo"), &round.to_string());
            let fresh = tagged(&component("counter"), &round.to_string());
            let fresh_name = format!("fresh-{round}");
            let (a, b) = tokio::join!(
                push(&api, "steady", next, None),
                push(&api, &fresh_name, fresh, None)
            );
            vec![a, b]
        }
        Work::Edit => {
            let Some((_, agent)) = send(api.client.get(api.url("/v1/agents/edited"))).await else {
                return vec![];
            };
            let base = agent["active_version"].clone();
            let lib = overseer_tests::package_file("echo", "src/lib.rs");
            let edited = format!("{lib}\n// round {round}\n");
            let proposed = post(
                &api,
                "/v1/agents/edited/edits",
                json!({ "base_version": base, "files": { "src/lib.rs": edited }, "reason": "crash" }),
            )
            .await;
            if let Some((StatusCode::ACCEPTED, edit)) = &proposed {
                let path = format!("/v1/agents/edited/edits/{}", edit["id"]);
                let mut poll = tokio::time::interval(Duration::from_millis(20));
                loop {
                    poll.tick().await;
                    let Some((_, edit)) = send(api.client.get(api.url(&path))).await else {
                        break;
                    };
                    if !["applying", "building", "checking"]
                        .contains(&edit["state"].as_str().unwrap_or_default())
                    {
                        break;
                    }
                }
            }
            vec![]
        }
        Work::Rollback => {
            let failing = tagged(&component("fixture-flaky"), &round.to_string());
            let answered = push(&api, "watched", failing, Some(FAILING)).await;
            for _ in 0..3 {
                post(
                    &api,
                    "/v1/agents/watched/invoke",
                    json!({ "fail": "error" }),
                )
                .await;
            }
            // The rollback happens on the daemon's own time: wait for it to land.
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..100 {
                poll.tick().await;
                match send(api.client.get(api.url("/v1/agents/watched"))).await {
                    Some((_, agent))
                        if agent["active_version"] != json!(null)
                            && answered.as_ref().is_none_or(|(_, pushed)| {
                                agent["active_version"] != pushed["version"]
                            }) =>
                    {
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            vec![answered]
        }
    }
}

/// Everything that must hold after a restart, whatever the kill interrupted.
async fn assert_consistent(api: &Api, store: &Store, data_dir: &Path, context: &str) {
    let dangling = store.dangling_versions().await.unwrap();
    assert!(dangling.is_empty(), "{context}: dangling {dangling:?}");

    let (_, body) = api.get("/v1/agents").await;
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
        assert!(
            !["rolled-back", "failed"].contains(&actives[0]["verdict"].as_str().unwrap_or("")),
            "{context}: {name}'s active version was condemned and still serves: {}",
            actives[0]
        );

        let (status, answer) = api.invoke(&name, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{context}: {name}: {answer}");
        assert_eq!(answer["version"], active, "{context}: {name}");

        // Edits: none left under way; every version an edit built is on a live edit.
        let edits = store
            .edits(&name, overseer_store::Page::latest(10_000))
            .await
            .unwrap();
        assert!(
            edits.iter().all(|e| !e.state.running()),
            "{context}: {name} has an edit under way after a restart"
        );
        for version in store.versions(&name).await.unwrap() {
            if version.origin != Origin::Edit || version.state != VersionState::Ready {
                continue;
            }
            let edit = edits
                .iter()
                .find(|e| Some(e.id) == version.edit)
                .unwrap_or_else(|| {
                    panic!("{context}: v{} of {name} names no edit", version.number)
                });
            assert!(
                matches!(edit.state, EditState::Live | EditState::RolledBack)
                    && edit.version == Some(version.number),
                "{context}: v{} of {name} went live but its edit {} says {} (version {:?})",
                version.number,
                edit.id,
                edit.state,
                edit.version
            );
        }
        let live: BTreeSet<u32> = edits
            .iter()
            .filter(|e| e.state == EditState::Live)
            .filter_map(|e| e.version)
            .collect();
        for number in live {
            assert!(
                store.version(&name, number).await.unwrap().is_some(),
                "{context}: a live edit of {name} names v{number}, which does not exist"
            );
        }

        // The working copy holds the active version's source.
        let (status, source) = api
            .get(&format!("/v1/agents/{name}/source?path=src/lib.rs"))
            .await;
        if status == StatusCode::OK {
            let copy =
                std::fs::read_to_string(data_dir.join("sources").join(&name).join("src/lib.rs"))
                    .unwrap_or_default();
            assert_eq!(
                copy,
                source["content"].as_str().unwrap(),
                "{context}: {name}'s working copy is not its active source"
            );
        }
    }
}

/// Every push answered before a kill is active after the restart, or was rolled back by its
/// watch window since.
async fn assert_durable(api: &Api, answered: impl Iterator<Item = (String, u64)>, context: &str) {
    for (name, version) in answered {
        let (_, agent) = api.get(&format!("/v1/agents/{name}")).await;
        let (_, history) = api.get(&format!("/v1/agents/{name}/versions")).await;
        let rolled_back = history["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["number"] == version && v["verdict"] == "rolled-back");
        assert!(
            agent["active_version"] == version || rolled_back,
            "{context}: an answered push of v{version} is durable: {agent}"
        );
    }
}

async fn sigkill_at_random_never_leaves_a_broken_agent(backend: Backend) {
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
    println!("crash loop on {backend:?}: seed {seed} (OVERSEER_CRASH_SEED reproduces it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let database = match backend {
        Backend::Sqlite => dir
            .path()
            .join("overseer.db")
            .to_string_lossy()
            .into_owned(),
        Backend::Postgres => overseer_store::testing::database().await,
    };

    // The agents every round works on, and how long each kind of work takes here.
    let daemon = Process::start(dir.path(), &build_settings(), |daemon| {
        daemon.args(["--token", TOKEN, "--database", &database]);
    });
    let api = Api::new(daemon.api.url.clone());
    let (status, body) = push(&api, "steady", tagged(&component("echo"), "0"), None)
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = push(&api, "watched", component("echo"), Some(WATCHED))
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for n in 0..3 {
        api.invoke("watched", json!(n)).await;
    }
    api.create_from_source("edited", "echo").await;
    let mut took = Vec::new();
    for (round, work) in WORK.iter().enumerate() {
        let started = Instant::now();
        run(*work, Api::new(api.url.clone()), 1000 + round as u32).await;
        took.push(started.elapsed());
    }
    daemon.kill();
    let store = Store::open(&database).await.expect("the store opens");

    let (mut completed, mut cut) = (0, 0);
    // Versions whose push was answered before the kill: each must be active after the restart.
    let mut answered: Vec<(String, u64)> = Vec::new();
    for round in 1..=ROUNDS {
        let daemon = Process::start(dir.path(), &build_settings(), |daemon| {
            daemon.args(["--token", TOKEN, "--database", &database]);
        });
        let context = format!("{backend:?} after round {}", round - 1);
        assert_consistent(&daemon.api, &store, dir.path(), &context).await;
        assert_durable(&daemon.api, answered.drain(..), &context).await;

        let index = (round as usize) % WORK.len();
        let work = WORK[index];
        // Killed somewhere between the start of the work and a little past its end.
        let kill_after = Duration::from_micros(rng.below(took[index].as_micros() as u64 * 3 / 2));
        let api = Api::new(daemon.api.url.clone());
        let mut running = tokio::spawn(run(work, api, round));
        let in_time = tokio::time::timeout(kill_after, &mut running).await;
        daemon.kill();
        let outcomes = match in_time {
            Ok(done) => done.unwrap(),
            Err(_) => running.await.unwrap(),
        };
        for outcome in outcomes {
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

    let daemon = Process::start(dir.path(), &build_settings(), |daemon| {
        daemon.args(["--token", TOKEN, "--database", &database]);
    });
    assert_consistent(&daemon.api, &store, dir.path(), "after the last round").await;
    assert_durable(&daemon.api, answered.drain(..), "after the last round").await;
    let (_, edits) = daemon.api.get("/v1/agents/edited/edits?limit=1000").await;
    println!(
        "{backend:?}: pushes, an edit and a rollback took {took:?}; {ROUNDS} kills; pushes answered before the kill: {completed}, cut short: {cut}; edits: {}",
        edits["edits"].as_array().map(Vec::len).unwrap_or(0)
    );
    daemon.kill();
}

overseer_tests::on_both_backends!(sigkill_at_random_never_leaves_a_broken_agent);
