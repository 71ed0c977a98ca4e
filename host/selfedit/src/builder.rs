//! Builds agents from source: Rust agents with `cargo build --release --target wasm32-wasip2`
//! against one shared target directory, one build at a time, with the artifacts found from
//! cargo's JSON messages. The same code builds the bundled agents and the test fixtures.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cargo_metadata::Message;

use crate::error::{Error, Result};

/// The target every agent is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Environment variables a build keeps (with every `RUSTUP_*`): where the toolchains and the
/// registry cache are, and how to find programs.
const BUILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "CARGO_NET_OFFLINE",
    "TMPDIR",
    "LANG",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    // Certificate bundles, for registries behind a proxy that re-signs TLS.
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PYENV_ROOT",
];

/// Builds run one at a time: they share a target directory and two cores.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A component produced by a build.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The cargo package name.
    pub package: String,
    /// The `.wasm` component.
    pub wasm: PathBuf,
    /// The package's directory (where its `agent.toml` lives).
    pub dir: PathBuf,
    /// The component, read before the next build can overwrite it.
    pub bytes: Vec<u8>,
}

/// The result of a build: its components and everything cargo printed.
#[derive(Debug, Clone)]
pub struct Build {
    pub artifacts: Vec<Artifact>,
    pub log: String,
    pub elapsed: Duration,
}

fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
}

/// Install the `wasm32-wasip2` standard library with rustup when it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| Error::Build(format!("cannot run rustc: {e}")))?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && !libdir.is_empty() && has_std(Path::new(&libdir)) {
        return Ok(());
    }
    tracing::info!("installing the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| Error::Build(format!("cannot run rustup to add {WASM_TARGET}: {e}")))?;
    if !status.success() {
        return Err(Error::Build(format!(
            "`rustup target add {WASM_TARGET}` failed ({status})"
        )));
    }
    Ok(())
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

/// Build `packages` (all of the workspace when empty) of the cargo workspace at `dir` into
/// `target_dir`, stopping the build after `timeout`.
pub fn build_rust(
    dir: &Path,
    target_dir: &Path,
    packages: &[&str],
    timeout: Duration,
) -> Result<Build> {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wasm_target()?;
    let started = Instant::now();
    let mut command = cargo();
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir)
        // The build sees only what cargo and rustup need: source that reads the environment
        // at build time (`env!`) must not find the daemon's token or keys.
        .env_clear()
        .envs(build_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if packages.is_empty() {
        command.arg("--workspace");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Build(format!("cannot run cargo: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    });
    let stdout_reader = std::thread::spawn(move || {
        let mut artifacts = Vec::new();
        let mut diagnostics = String::new();
        if let Some(stdout) = stdout {
            for message in Message::parse_stream(BufReader::new(stdout)) {
                match message {
                    Ok(Message::CompilerArtifact(artifact)) => {
                        for file in &artifact.filenames {
                            if file.extension() == Some("wasm") {
                                artifacts.push(Artifact {
                                    package: artifact.target.name.replace('_', "-"),
                                    wasm: file.clone().into_std_path_buf(),
                                    dir: artifact
                                        .manifest_path
                                        .parent()
                                        .map(|p| p.to_path_buf().into_std_path_buf())
                                        .unwrap_or_default(),
                                    bytes: Vec::new(),
                                });
                            }
                        }
                    }
                    Ok(Message::CompilerMessage(message)) => {
                        if let Some(rendered) = &message.message.rendered {
                            diagnostics.push_str(rendered);
                        }
                    }
                    Ok(Message::TextLine(line)) => {
                        diagnostics.push_str(&line);
                        diagnostics.push('\n');
                    }
                    _ => {}
                }
            }
        }
        (artifacts, diagnostics)
    });

    let status = wait(&mut child, started, timeout)?;
    let (mut artifacts, diagnostics) = stdout_reader.join().unwrap_or_default();
    let errors = stderr_reader.join().unwrap_or_default();
    let log = format!("{diagnostics}{errors}");
    if !status.success() {
        return Err(Error::Build(log));
    }
    for artifact in &mut artifacts {
        artifact.bytes = std::fs::read(&artifact.wasm)
            .map_err(|e| Error::Build(format!("{}: {e}", artifact.wasm.display())))?;
    }
    Ok(Build {
        artifacts,
        log,
        elapsed: started.elapsed(),
    })
}

/// Wait for a build to finish, or stop it after `timeout` from `started`.
fn wait(
    child: &mut std::process::Child,
    started: Instant,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::Build(format!("waiting for the build: {e}")))?
        {
            return Ok(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Build(format!(
                "the build took longer than {} s and was stopped",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The componentize-py release Python agents are built with: pinned, so the same source makes
/// the same component on every machine.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The componentize-js release JavaScript agents are built with, pinned likewise.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The contract, built into the binary so a Python or JavaScript build needs no source tree.
pub const WIT: &str = include_str!("../../../wit/agent.wit");

/// The languages agents are built from besides Rust, each by its componentizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `app.py` defining `WitWorld`, built by componentize-py.
    Python,
    /// `app.js` exporting `describe`, `handle` and `health`, built by componentize-js.
    JavaScript,
}

impl Language {
    /// The file an agent's source in this language starts from.
    pub fn app(self) -> &'static str {
        match self {
            Language::Python => "app.py",
            Language::JavaScript => "app.js",
        }
    }

    /// The language of a source with these files, when it is not Rust (no `Cargo.toml`).
    pub fn of(has: impl Fn(&str) -> bool) -> Option<Language> {
        if has("Cargo.toml") {
            return None;
        }
        [Language::Python, Language::JavaScript]
            .into_iter()
            .find(|language| has(language.app()))
    }

    /// Install the componentizer into `tools` unless it is there; answer the command that
    /// builds `dir/app.*` into `out` against the contract in `wit`. The caller holds the build
    /// lock.
    fn componentizer(self, tools: &Path, dir: &Path, wit: &Path, out: &Path) -> Result<Command> {
        match self {
            Language::Python => {
                let (venv, install) = install_dir(tools, "python", COMPONENTIZE_PY)?;
                let exe = venv.join("bin").join("componentize-py");
                if install {
                    tracing::info!(dir = %venv.display(), "installing {COMPONENTIZE_PY}");
                    run_tool(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
                    run_tool(
                        Command::new(venv.join("bin").join("pip"))
                            .args(["install", "--disable-pip-version-check", "--quiet"])
                            .arg(COMPONENTIZE_PY),
                    )?;
                    mark(&venv.join(".installed"))?;
                }
                let mut command = Command::new(exe);
                command
                    .env_clear()
                    .envs(build_env())
                    .arg("-d")
                    .arg(wit)
                    .args(["-w", "agent", "componentize", "app", "-p"])
                    .arg(dir)
                    .arg("-o")
                    .arg(out)
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                Ok(command)
            }
            Language::JavaScript => {
                let (prefix, install) = install_dir(tools, "js", COMPONENTIZE_JS)?;
                let script = prefix.join("componentize.mjs");
                if install {
                    tracing::info!(dir = %prefix.display(), "installing {COMPONENTIZE_JS}");
                    run_tool(
                        Command::new("npm")
                            .args(["install", "--no-audit", "--no-fund", "--prefix"])
                            .arg(&prefix)
                            .arg(COMPONENTIZE_JS),
                    )?;
                    mark(&prefix.join(".installed"))?;
                }
                if std::fs::read_to_string(&script).ok().as_deref() != Some(COMPONENTIZE_MJS) {
                    std::fs::write(&script, COMPONENTIZE_MJS)
                        .map_err(|e| Error::Build(format!("{}: {e}", script.display())))?;
                }
                let mut command = Command::new("node");
                command
                    .env_clear()
                    .envs(build_env())
                    .arg(script)
                    .arg(dir.join(self.app()))
                    .arg(wit)
                    .arg(out);
                Ok(command)
            }
        }
    }
}

/// Drives componentize-js through its JavaScript API. The agent world has no use for the
/// engine's own HTTP client or fetch handler, and the host does not serve `wasi:http`.
const COMPONENTIZE_MJS: &str = r#"import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: 'agent',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
"#;

/// Record that an install finished: only then is it taken as done, and a new pin installs anew.
fn mark(file: &Path) -> Result<()> {
    std::fs::write(file, b"").map_err(|e| Error::Build(format!("{}: {e}", file.display())))
}

/// The environment of a build or an install: what finding programs, toolchains and package
/// registries needs, never the daemon's token or keys.
fn build_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        let name = name.to_string_lossy();
        BUILD_ENV.contains(&name.as_ref())
            || ["RUSTUP_", "PIP_", "npm_config_", "NPM_CONFIG_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
    })
}

/// A directory for one pinned install of a tool, made anew unless a finished install is there.
/// Returns it, and whether it must be installed into.
fn install_dir(tools: &Path, tool: &str, pin: &str) -> Result<(PathBuf, bool)> {
    let slug: String = pin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let dir = tools.join(tool).join(slug);
    if dir.join(".installed").exists() {
        return Ok((dir, false));
    }
    // An install cut short is thrown away whole: installers do not mend a half tree reliably.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::Build(format!("{}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Build(format!("{}: {e}", dir.display())))?;
    Ok((dir, true))
}

/// Run an installer to its end; its output is the error when it fails.
fn run_tool(command: &mut Command) -> Result<()> {
    let output = command
        .env_clear()
        .envs(build_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Build(format!("cannot run {:?}: {e}", command.get_program())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!(
            "{:?} failed: {}{}",
            command.get_program(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Build the agent in `dir` (its `app.*` and any modules beside it) into the component `out`
/// with the language's componentizer, installed into `tools` on first use.
pub fn componentize(
    language: Language,
    dir: &Path,
    out: &Path,
    tools: &Path,
    timeout: Duration,
) -> Result<Build> {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    // The componentizer runs in `dir`: every path it is given must hold from there.
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|e| Error::Build(format!("{}: {e}", path.display())))
    };
    let (dir, out, tools) = (absolute(dir)?, absolute(out)?, absolute(tools)?);
    let (dir, out, tools) = (dir.as_path(), out.as_path(), tools.as_path());
    if !dir.join(language.app()).exists() {
        return Err(Error::Build(format!(
            "{} has no {}",
            dir.display(),
            language.app()
        )));
    }
    let wit = tools.join("wit");
    std::fs::create_dir_all(&wit).map_err(|e| Error::Build(format!("{}: {e}", wit.display())))?;
    let wit_file = wit.join("agent.wit");
    if std::fs::read_to_string(&wit_file).ok().as_deref() != Some(WIT) {
        std::fs::write(&wit_file, WIT)
            .map_err(|e| Error::Build(format!("{}: {e}", wit_file.display())))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Build(format!("{}: {e}", parent.display())))?;
    }
    let mut command = language.componentizer(tools, dir, &wit, out)?;
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Build(format!("cannot run the componentizer: {e}")))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out_reader = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_reader = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait(&mut child, started, timeout)?;
    let log = format!(
        "{}{}",
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default()
    );
    if !status.success() {
        return Err(Error::Build(log));
    }
    let bytes = std::fs::read(out).map_err(|e| Error::Build(format!("{}: {e}", out.display())))?;
    Ok(Build {
        artifacts: vec![Artifact {
            package: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            wasm: out.to_path_buf(),
            dir: dir.to_path_buf(),
            bytes,
        }],
        log,
        elapsed: started.elapsed(),
    })
}

/// The source directories of the agents to load at start: directories directly under `dir`
/// with both a `Cargo.toml` and an `agent.toml` (fixtures live deeper and are skipped).
pub fn bundled_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("agent.toml").exists() && p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}
