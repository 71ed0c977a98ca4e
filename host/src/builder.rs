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
        .envs(std::env::vars_os().filter(|(name, _)| {
            let name = name.to_string_lossy();
            BUILD_ENV.contains(&name.as_ref()) || name.starts_with("RUSTUP_")
        }))
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

/// The contract, built into the binary so a Python build needs no source tree.
pub const WIT: &str = include_str!("../../wit/agent.wit");

/// The Python file a Python agent's source must have: it defines `WitWorld`.
pub const PYTHON_APP: &str = "app.py";

/// Install componentize-py into a virtual environment under `tools` unless it is there.
/// Returns its executable. The caller holds the build lock.
fn componentize_py(tools: &Path) -> Result<PathBuf> {
    let venv = tools.join("python");
    let exe = venv.join("bin").join("componentize-py");
    if exe.exists() {
        return Ok(exe);
    }
    tracing::info!(dir = %venv.display(), "installing {COMPONENTIZE_PY}");
    let run = |program: &Path, args: &[&str]| -> Result<()> {
        let output = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Build(format!("cannot run {}: {e}", program.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Build(format!(
                "{} {} failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    };
    let venv_arg = venv.to_string_lossy().to_string();
    run(Path::new("python3"), &["-m", "venv", &venv_arg])?;
    run(
        &venv.join("bin").join("pip"),
        &[
            "install",
            "--disable-pip-version-check",
            "--quiet",
            COMPONENTIZE_PY,
        ],
    )?;
    if exe.exists() {
        Ok(exe)
    } else {
        Err(Error::Build(format!(
            "{COMPONENTIZE_PY} installed, but {} is missing",
            exe.display()
        )))
    }
}

/// Build the Python agent in `dir` (its `app.py` and any modules beside it) into the component
/// `out`, with componentize-py from `tools` (installed there on first use).
pub fn build_python(dir: &Path, out: &Path, tools: &Path, timeout: Duration) -> Result<Build> {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    if !dir.join(PYTHON_APP).exists() {
        return Err(Error::Build(format!(
            "{} has no {PYTHON_APP}",
            dir.display()
        )));
    }
    let exe = componentize_py(tools)?;
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
    let mut child = Command::new(&exe)
        .current_dir(dir)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "agent", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-o")
        .arg(out)
        .env_clear()
        .envs(
            std::env::vars_os()
                .filter(|(name, _)| BUILD_ENV.contains(&name.to_string_lossy().as_ref())),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Build(format!("cannot run componentize-py: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out_reader = read(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_reader = read(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
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
