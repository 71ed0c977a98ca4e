//! `overseer new` and `overseer build`: a new agent's source that builds as it is, and the build
//! of an agent's source directory into a component with the host's own builder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::builder::{self, Artifact};
use crate::error::{Error, Result, check_name};

/// The languages `overseer new` scaffolds.
pub const LANGUAGES: &[&str] = &["rust", "python", "js"];

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
overseer-guest = { path = "{sdk}" }

# An agent builds on its own; the host builds it inside a workspace of its own too.
[workspace]

# Small components: they are stored per version and compiled on every push.
# `panic = "abort"` turns a panic straight into a trap, with no unwinding code.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
debug = false
strip = true
panic = "abort"
"#;

const AGENT_TOML: &str = r#"name = "{name}"
description = "Greets whoever it is given and counts its greetings"

# Every setting below is optional; the host's defaults apply where one is absent.
[limits]
timeout_ms = 2_000

[capabilities]
grant = []           # "llm", "http", "source"; runtime and kv are always granted
http_allow = []      # origins `http` may reach: "https://api.example.com"

[triggers]
subscribe = []       # topics: "market.tick", "alert.*"
# every = "60s"

[config]
greeting = "hello"
"#;

const LIB_RS: &str = r#"//! `{name}`: greets whoever it is given and counts its greetings in kv.

use overseer_guest::{Agent, Error, Event, Info, kv, log};

struct Greeter;

impl Agent for Greeter {
    fn describe() -> Info {
        Info {
            name: "{name}".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Greets whoever it is given and counts its greetings".to_string(),
            subscriptions: vec![],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let who = event.payload.trim().trim_matches('"');
        if who.is_empty() {
            return Err(Error::invalid_input("give a name, as a JSON string"));
        }
        let count = kv::get("greetings")?
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        kv::set("greetings", &count.to_string())?;
        let greeting = overseer_guest::config("greeting").unwrap_or_else(|| "hello".to_string());
        log::info(&format!("greeting number {count}"));
        overseer_guest::emit("{name}.greeted", &format!("{{\"count\":{count}}}"))?;
        Ok(format!("{{\"greeting\":\"{greeting}, {who}\",\"count\":{count}}}"))
    }
}

overseer_guest::export!(Greeter);
"#;

const APP_PY: &str = r#""""`{name}`: greets whoever it is given and counts its greetings in kv.

An overseer agent in Python, built into a component by componentize-py. `wit_world` holds the
bindings of the contract: the `WitWorld` class below is the agent, the modules under
`wit_world.imports` are what the host serves (kv, runtime, llm, http, source).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import kv, runtime, types


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Info:
        return types.Info(
            name="{name}",
            version="0.1.0",
            description="Greets whoever it is given and counts its greetings",
            subscriptions=[],
        )

    def handle(self, event: types.Event) -> str:
        who = json.loads(event.payload)
        if not isinstance(who, str) or not who:
            raise Err(types.Error_InvalidInput("give a name, as a JSON string"))
        count = int(kv.get("greetings") or "0") + 1
        kv.set("greetings", str(count))
        greeting = runtime.config("greeting") or "hello"
        runtime.log(types.Level.INFO, f"greeting number {count}")
        runtime.emit("{name}.greeted", json.dumps({"count": count}))
        return json.dumps({"greeting": f"{greeting}, {who}", "count": count})

    def health(self) -> types.Health:
        return types.Health(ok=True, detail="ok")
"#;

const APP_JS: &str = r#"// `{name}`: greets whoever it is given and counts its greetings in kv.
//
// An overseer agent in JavaScript, built into a component by componentize-js. The contract's
// interfaces are imported as modules (`overseer:agent/kv@0.1.0`, `.../runtime@0.1.0`, llm,
// http, source); `describe`, `handle` and `health` are the exports. An error the caller can
// act on is thrown as `{ tag: 'invalid-input' | 'denied' | 'unavailable' | 'failed', val }`.

import * as kv from 'overseer:agent/kv@0.1.0';
import * as runtime from 'overseer:agent/runtime@0.1.0';

export function describe() {
  return {
    name: '{name}',
    version: '0.1.0',
    description: 'Greets whoever it is given and counts its greetings',
    subscriptions: [],
  };
}

export function handle(event) {
  const who = JSON.parse(event.payload);
  if (typeof who !== 'string' || who === '') {
    throw { tag: 'invalid-input', val: 'give a name, as a JSON string' };
  }
  const count = Number(kv.get('greetings') ?? '0') + 1;
  kv.set('greetings', String(count));
  const greeting = runtime.config('greeting') ?? 'hello';
  runtime.log('info', `greeting number ${count}`);
  runtime.emit('{name}.greeted', JSON.stringify({ count }));
  return JSON.stringify({ greeting: `${greeting}, ${who}`, count });
}

export function health() {
  return { ok: true, detail: 'ok' };
}
"#;

const README_JS: &str = r#"# {name}

An overseer agent in JavaScript: `app.js`, built into a WebAssembly component of the
`overseer:agent` world by componentize-js (installed by `overseer build` on first use).

```sh
overseer build {dir}                 # prints the component's path
overseer push {name} {dir}/target/{name}.wasm --manifest {dir}/agent.toml
overseer invoke {name} '"world"'
```

`app.js` is the agent, `agent.toml` its manifest (limits, grants, triggers, config).
"#;

const README_PY: &str = r#"# {name}

An overseer agent in Python: `app.py`, built into a WebAssembly component of the
`overseer:agent` world by componentize-py (installed by `overseer build` on first use).

```sh
overseer build {dir}                 # prints the component's path
overseer push {name} {dir}/target/{name}.wasm --manifest {dir}/agent.toml
overseer invoke {name} '"world"'
```

`app.py` is the agent, `agent.toml` its manifest (limits, grants, triggers, config). A Python
component is about 18 MB; the host compiles it once and keeps the native code in its cache.
"#;

const README_MD: &str = r#"# {name}

An overseer agent in Rust: a WebAssembly component of the `overseer:agent` world.

```sh
overseer build {dir}                 # prints the component's path
overseer push {name} {dir}/target/wasm32-wasip2/release/{crate}.wasm --manifest {dir}/agent.toml
overseer invoke {name} '"world"'
```

`src/lib.rs` is the agent, `agent.toml` its manifest (limits, grants, triggers, config).
"#;

/// Write a new agent called `name` in `language` into `dir`, which must not exist yet.
/// `sdk` is the guest SDK (`guest-sdk/`) the agent depends on.
pub fn new_agent(name: &str, language: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>> {
    check_name(name)?;
    if !LANGUAGES.contains(&language) {
        return Err(Error::InvalidRequest(format!(
            "language {language:?}: overseer new knows {}",
            LANGUAGES.join(", ")
        )));
    }
    if dir.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} already exists",
            dir.display()
        )));
    }
    let sdk = sdk
        .canonicalize()
        .map_err(|e| Error::Internal(format!("the guest SDK at {}: {e}", sdk.display())))?;
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{crate}", &name.replace('-', "_"))
            .replace("{dir}", &dir.display().to_string())
            .replace("{sdk}", &sdk.display().to_string())
    };
    let files = match language {
        "python" => vec![
            ("app.py", fill(APP_PY)),
            ("agent.toml", fill(AGENT_TOML)),
            ("README.md", fill(README_PY)),
            (".gitignore", "target/\n__pycache__/\n".to_string()),
        ],
        "js" => vec![
            ("app.js", fill(APP_JS)),
            ("agent.toml", fill(AGENT_TOML)),
            ("README.md", fill(README_JS)),
            (".gitignore", "target/\nnode_modules/\n".to_string()),
        ],
        _ => vec![
            ("Cargo.toml", fill(CARGO_TOML)),
            ("agent.toml", fill(AGENT_TOML)),
            ("src/lib.rs", fill(LIB_RS)),
            ("README.md", fill(README_MD)),
            (".gitignore", "target/\n".to_string()),
        ],
    };
    let mut written = Vec::new();
    for (path, text) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Internal(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&file, text)
            .map_err(|e| Error::Internal(format!("{}: {e}", file.display())))?;
        written.push(file);
    }
    Ok(written)
}

/// Build the agent whose source is in `dir` into a component, into `target_dir` (the
/// directory's own `target/` by default): a `Cargo.toml` makes it Rust, an `app.py` Python, an
/// `app.js` JavaScript (their componentizers are installed into `tools` on first use).
pub fn build(
    dir: &Path,
    target_dir: Option<&Path>,
    tools: &Path,
    timeout: Duration,
) -> Result<Artifact> {
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::InvalidRequest(format!("{}: {e}", dir.display())))?;
    let target = target_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("target"));
    if !dir.join("Cargo.toml").exists() {
        let Some(language) = builder::Language::of(|file| dir.join(file).exists()) else {
            return Err(Error::InvalidRequest(format!(
                "{} has no Cargo.toml (Rust), app.py (Python) or app.js (JavaScript)",
                dir.display()
            )));
        };
        // Named after the agent, as its manifest says, else after its directory.
        let name = std::fs::read_to_string(dir.join("agent.toml"))
            .ok()
            .and_then(|text| crate::manifest::Manifest::parse(&text).ok())
            .and_then(|manifest| manifest.name)
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "agent".to_string());
        let out = target.join(format!("{name}.wasm"));
        let build = builder::componentize(language, &dir, &out, tools, timeout)?;
        return build
            .artifacts
            .into_iter()
            .next()
            .ok_or_else(|| Error::Build("the build made no component".to_string()));
    }
    let build = builder::build_rust(&dir, &target, &[], timeout)?;
    build
        .artifacts
        .into_iter()
        .find(|a| a.dir == dir)
        .ok_or_else(|| Error::Build(format!("the build of {} made no component", dir.display())))
}

/// The guest SDK of the source tree this binary was built from.
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}
