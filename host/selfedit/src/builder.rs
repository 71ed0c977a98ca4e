//! Builds agents from source: Rust agents with `cargo build --release --target wasm32-wasip2`
//! against one shared target directory, one build at a time, with the artifacts found from
//! cargo's JSON messages. The same code builds the bundled agents and the test fixtures.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cargo_metadata::Message;

use crate::error::{Error, Result};
use crate::isolation::{self, Isolation, Jail, Tracked};

/// The target every agent is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// How to reach a registry: proxies and the certificate bundles of a proxy that re-signs TLS.
/// Kept by the dependency fetch and by the componentizers' installs, never anything else of
/// the daemon's environment (its token, its keys).
const PROXY_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// What the dependency fetch keeps besides [`PROXY_ENV`] (and every `RUSTUP_*`,
/// `CARGO_REGISTRIES_*`, `CARGO_HTTP_*`, `CARGO_NET_*`). The build itself gets only what it
/// needs ([`rust_build_env`]).
const FETCH_ENV: &[&str] = &["HOME", "CARGO_HOME", "LANG"];

/// What a componentizer's install keeps besides [`PROXY_ENV`] (and every `PIP_*` and npm
/// setting): how to find Python, Node and their registries.
const INSTALL_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
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

/// The toolchain's own `cargo` (not a rustup proxy, which would need rustup's home writable),
/// else whatever `cargo` is on the path.
fn cargo() -> Command {
    match isolation::sysroot().map(|root| root.join("bin").join("cargo")) {
        Some(cargo) if cargo.exists() => Command::new(cargo),
        _ => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    }
}

/// Install the `wasm32-wasip2` standard library with rustup when it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    if wasm_target_installed()? {
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

/// Whether the toolchain `rustc` runs has the standard library for [`WASM_TARGET`]; changes
/// nothing.
///
/// # Errors
/// [`Error::Build`] when `rustc` cannot be run.
pub fn wasm_target_installed() -> Result<bool> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| Error::Build(format!("cannot run rustc: {e}")))?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(output.status.success() && !libdir.is_empty() && has_std(Path::new(&libdir)))
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
///
/// Two steps: `cargo fetch` brings the dependencies of the lock file into cargo's cache (with
/// the network, running no code of the source's author), then `cargo build --offline` runs in
/// the [`Jail`]: it reads the system, the toolchain, the dependency cache and the source's path
/// dependencies, writes only `dir` and `target_dir`, and has no network.
///
/// # Errors
/// [`Error::Isolation`] when `isolation` is required and unavailable; [`Error::Build`] with
/// cargo's output when either step fails or the build outlives `timeout`.
pub fn build_rust(
    dir: &Path,
    target_dir: &Path,
    packages: &[&str],
    timeout: Duration,
    isolation: Isolation,
) -> Result<Build> {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wasm_target()?;
    let started = Instant::now();
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|e| Error::Build(format!("{}: {e}", path.display())))
    };
    let (dir, target_dir) = (absolute(dir)?, absolute(target_dir)?);
    let (dir, target_dir) = (dir.as_path(), target_dir.as_path());
    // Daemons sharing a build directory (and their crash restarts) take turns on a target
    // directory, as cargo would: its cargo homes are made anew below.
    let _target_lock = lock_target(target_dir)?;
    let reads = path_dependencies(dir);
    let cargo_home = isolation::cargo_home();

    // Step 1: the dependencies, into the shared cache.
    let mut fetch = cargo();
    fetch
        .current_dir(dir)
        .args(["fetch", "--target", WASM_TARGET])
        .args(
            host_triple()
                .map(|host| ["--target".to_string(), host])
                .into_iter()
                .flatten(),
        )
        .env_clear()
        .envs(fetch_env())
        .env("PATH", toolchain_path());
    // A cargo home of its own, out of every build's reach, whose registry and git checkouts
    // are the shared ones: the fetch writes the dependency cache and nothing else of cargo's
    // home (its programs, its credentials file stay as they are).
    let fetch_home = private_cargo_home(
        &sibling(target_dir, "fetch-home"),
        cargo_home.as_deref(),
        true,
    )?;
    fetch.env("CARGO_HOME", &fetch_home);
    let mut jail = Jail::new().write(dir).write(&fetch_home).with_network();
    jail = with_toolchain(jail, &reads);
    if let Some(home) = &cargo_home {
        for cache in ["registry", "git"] {
            let cache = home.join(cache);
            std::fs::create_dir_all(&cache)
                .map_err(|e| Error::Build(format!("{}: {e}", cache.display())))?;
            jail = jail.write(cache);
        }
    }
    let fetched = run(&mut fetch, &jail, isolation, started, timeout)?;
    if !fetched.status.success() {
        return Err(Error::Build(format!(
            "fetching dependencies failed:\n{}{}",
            fetched.stdout, fetched.stderr
        )));
    }

    // Step 2: the build, offline, with a private cargo home that links to the cache read-only.
    let private = private_cargo_home(
        &target_dir.join(".cargo-home"),
        cargo_home.as_deref(),
        false,
    )?;
    let tmp = target_dir.join(".tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::Build(format!("{}: {e}", tmp.display())))?;
    let mut command = cargo();
    command
        .current_dir(dir)
        .args(["build", "--release", "--offline", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir)
        .env_clear()
        .envs(rust_build_env(&private, &tmp));
    if packages.is_empty() {
        command.arg("--workspace");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let mut jail = Jail::new().write(dir).write(target_dir);
    jail = with_toolchain(jail, &reads);
    if let Some(home) = &cargo_home {
        jail = jail.read(home.join("registry")).read(home.join("git"));
    }
    let output = run(&mut command, &jail, isolation, started, timeout)?;
    let mut artifacts = Vec::new();
    let mut diagnostics = String::new();
    for message in Message::parse_stream(output.stdout.as_bytes()) {
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
    let log = format!("{diagnostics}{}", output.stderr);
    if !output.status.success() {
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

/// What a finished process printed.
struct Output {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run `command` confined by `jail` to its end, or kill it whole once `timeout` from `started`
/// has passed. Whatever it left running is killed either way, and its output is read to the
/// end.
fn run(
    command: &mut Command,
    jail: &Jail,
    isolation: Isolation,
    started: Instant,
    timeout: Duration,
) -> Result<Output> {
    if isolation::stopping() {
        return Err(Error::Build("the daemon is stopping".to_string()));
    }
    jail.confine(command, isolation)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let program = command.get_program().to_string_lossy().into_owned();
            match isolation {
                // The sandbox is set up between fork and exec: a failure there is the
                // sandbox's, not the program's.
                Isolation::Required if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    Error::Isolation(format!("the sandbox could not start {program:?}: {e}"))
                }
                _ => Error::Build(format!("cannot start {program:?}: {e}")),
            }
        })?;
    let tracked = Tracked::new(child.id());
    let stdout = read_to_end(child.stdout.take());
    let stderr = read_to_end(child.stderr.take());
    let waited = wait(&mut child, &tracked, started, timeout);
    // Whatever the build started and left behind goes with it.
    tracked.kill();
    drop(tracked);
    let status = waited?;
    Ok(Output {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    })
}

/// A pipe read to its end on a thread of its own.
struct Reader(std::sync::mpsc::Receiver<String>);

impl Reader {
    /// What was read. The build's processes are dead by now, so the pipe has closed; a
    /// process that escaped the kill would hold it open, and is given a few seconds.
    fn finish(self) -> String {
        self.0
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "[output not closed by the build: cut]".to_string())
    }
}

fn read_to_end(pipe: Option<impl Read + Send + 'static>) -> Reader {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = sender.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    Reader(receiver)
}

/// Wait for a build to finish, or kill it whole after `timeout` from `started`.
fn wait(
    child: &mut std::process::Child,
    tracked: &Tracked,
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
            tracked.kill();
            let _ = child.wait();
            return Err(Error::Build(format!(
                "the build took longer than {} s and was stopped",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The toolchain, the system and `reads` (the source's path dependencies), readable.
fn with_toolchain(mut jail: Jail, reads: &[PathBuf]) -> Jail {
    if let Some(root) = isolation::sysroot() {
        jail = jail.read(root);
    }
    for path in reads {
        jail = jail.read(path);
    }
    jail
}

/// `PATH` inside a build: the toolchain's own binaries first, then the system's.
fn toolchain_path() -> String {
    let mut path = String::new();
    if let Some(root) = isolation::sysroot() {
        path.push_str(&root.join("bin").to_string_lossy());
        path.push(':');
    }
    path.push_str("/usr/local/bin:/usr/bin:/bin");
    path
}

/// The whole environment of a Rust build: the toolchain's path, a private cargo home and a
/// temporary directory in the target directory, offline.
fn rust_build_env(cargo_home: &Path, tmp: &Path) -> Vec<(String, std::ffi::OsString)> {
    vec![
        ("PATH".to_string(), toolchain_path().into()),
        ("HOME".to_string(), tmp.as_os_str().to_owned()),
        ("CARGO_HOME".to_string(), cargo_home.as_os_str().to_owned()),
        ("TMPDIR".to_string(), tmp.as_os_str().to_owned()),
        ("CARGO_NET_OFFLINE".to_string(), "true".into()),
        ("LANG".to_string(), "C.UTF-8".into()),
    ]
}

/// Hold `<target_dir>.lock` exclusively (an advisory lock, released with the file).
fn lock_target(target_dir: &Path) -> Result<std::fs::File> {
    let path = sibling(target_dir, "lock");
    let io = |e: std::io::Error| Error::Build(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// `<dir>.<suffix>` beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

/// A cargo home at `home`, made anew: its own lock files and use records, the registry and git
/// checkouts of `shared` by symbolic link, and a copy of the shared `config.toml` (registry
/// mirrors) — with the credentials too when `credentials`, for the fetch, whose home no build
/// can read. Made anew because a build could write the last one: nothing it left there is
/// followed or kept.
fn private_cargo_home(home: &Path, shared: Option<&Path>, credentials: bool) -> Result<PathBuf> {
    let home = home.to_path_buf();
    let io = |path: &Path, e: std::io::Error| Error::Build(format!("{}: {e}", path.display()));
    match std::fs::remove_dir_all(&home) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&home, e)),
    }
    std::fs::create_dir_all(&home).map_err(|e| io(&home, e))?;
    let Some(shared) = shared else {
        return Ok(home);
    };
    for name in ["registry", "git"] {
        let link = home.join(name);
        std::os::unix::fs::symlink(shared.join(name), &link).map_err(|e| io(&link, e))?;
    }
    let mut copied = vec!["config.toml", "config"];
    if credentials {
        copied.extend(["credentials.toml", "credentials"]);
    }
    for name in copied {
        if let Ok(bytes) = std::fs::read(shared.join(name)) {
            let to = home.join(name);
            std::fs::write(&to, bytes).map_err(|e| io(&to, e))?;
        }
    }
    Ok(home)
}

/// The guest SDK's name: the one path dependency outside the source a build may read.
const GUEST_SDK: &str = "overseer-guest";

/// What a build of the workspace at `dir` may read outside it: the guest SDK when a path
/// dependency names it (in `[workspace.dependencies]` or `[dependencies]`), the `wit`
/// directory beside it that it generates its bindings from (`../wit`), and the `Cargo.toml`
/// files above it, where cargo looks for its workspace. Any other path dependency out of the
/// source stays unreadable, so a manifest cannot open the filesystem with `path = "/"`.
fn path_dependencies(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return Vec::new();
    };
    let Ok(manifest) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let tables = [
        manifest
            .get("workspace")
            .and_then(|w| w.get("dependencies")),
        manifest.get("dependencies"),
        manifest.get("build-dependencies"),
    ];
    let mut paths = Vec::new();
    for table in tables
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
    {
        for dependency in table.values() {
            let Some(path) = dependency.get("path").and_then(toml::Value::as_str) else {
                continue;
            };
            let Ok(path) = dir.join(path).canonicalize() else {
                continue;
            };
            if path.starts_with(dir) || !is_guest_sdk(&path) {
                continue;
            }
            if let Some(wit) = path.parent().map(|p| p.join("wit"))
                && wit.is_dir()
            {
                paths.push(wit);
            }
            // Cargo looks for the dependency's workspace root in the manifests above it.
            for ancestor in path.ancestors().skip(1) {
                let manifest = ancestor.join("Cargo.toml");
                if manifest.is_file() {
                    paths.push(manifest);
                }
            }
            paths.push(path);
        }
    }
    paths
}

/// Whether `dir` holds the guest SDK's package.
fn is_guest_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|manifest| {
            manifest
                .get("package")?
                .get("name")?
                .as_str()
                .map(|name| name == GUEST_SDK)
        })
        .unwrap_or(false)
}

/// The host's target triple (`rustc -vV`), for fetching build scripts' and macros'
/// dependencies.
fn host_triple() -> Option<String> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let output = Command::new("rustc").arg("-vV").output().ok()?;
        String::from_utf8(output.stdout)
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .map(str::to_string)
    })
    .clone()
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

    /// The language's name as users write it.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }

    /// The componentizer's package and version, as installed.
    pub fn componentizer_pin(self) -> &'static str {
        self.tool().1
    }

    /// The componentizer's directory under the tools directory, and its pinned package.
    fn tool(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("python", COMPONENTIZE_PY),
            Language::JavaScript => ("js", COMPONENTIZE_JS),
        }
    }

    /// The language of one file, by its extension: `.py`, or `.js` and `.mjs`.
    pub fn of_file(path: &str) -> Option<Language> {
        if path.ends_with(".py") {
            Some(Language::Python)
        } else if path.ends_with(".js") || path.ends_with(".mjs") {
            Some(Language::JavaScript)
        } else {
            None
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
    /// builds `dir/app.*` into `out` against the contract in `wit` (with `tmp` for its home and
    /// temporary files, and nothing else of the daemon's environment), and the directories of
    /// the interpreter it runs on. The caller holds the build lock.
    fn componentizer(
        self,
        tools: &Path,
        dir: &Path,
        wit: &Path,
        out: &Path,
        tmp: &Path,
    ) -> Result<(Command, Vec<PathBuf>)> {
        let base = |program: &Path| {
            let mut command = Command::new(program);
            command
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", tmp)
                .env("TMPDIR", tmp)
                .env("LANG", "C.UTF-8");
            command
        };
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
                // The venv runs on the Python it was made from (`home` in `pyvenv.cfg`).
                let python = std::fs::read_to_string(venv.join("pyvenv.cfg"))
                    .ok()
                    .and_then(|cfg| {
                        cfg.lines().find_map(|line| {
                            let (key, value) = line.split_once('=')?;
                            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
                        })
                    })
                    .and_then(|home| home.parent().map(Path::to_path_buf));
                let mut command = base(&exe);
                command
                    .arg("-d")
                    .arg(wit)
                    .args(["-w", "agent", "componentize", "app", "-p"])
                    .arg(dir)
                    .arg("-o")
                    .arg(out)
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                Ok((command, python.into_iter().collect()))
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
                // Node as the daemon finds it, and the installation it belongs to
                // (`<prefix>/bin/node`).
                let node = std::env::var_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths)
                    .map(|dir| dir.join("node"))
                    .find(|node| node.is_file())
                    .and_then(|node| node.canonicalize().ok())
                    .unwrap_or_else(|| PathBuf::from("/usr/bin/node"));
                let prefix = node.parent().and_then(Path::parent).map(Path::to_path_buf);
                let mut command = base(&node);
                command
                    .arg(script)
                    .arg(dir.join(self.app()))
                    .arg(wit)
                    .arg(out);
                Ok((command, prefix.into_iter().collect()))
            }
        }
    }
}

/// Drives componentize-js through its JavaScript API. The agent world has no use for the
/// engine's own HTTP client or fetch handler, and the host does not serve `wasi:http`. The
/// snapshot's wizer gets a cache directory under the build's own `TMPDIR`.
const COMPONENTIZE_MJS: &str = r#"import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: 'agent',
  disableFeatures: ['http', 'fetch-event'],
  // Wizer runs with only this environment: without a cache directory of its own it would
  // reach for the user's home, which the build's sandbox does not let it write.
  env: { XDG_CACHE_HOME: resolve(process.env.TMPDIR, 'cache') },
});
await writeFile(out, component);
"#;

/// Record that an install finished: only then is it taken as done, and a new pin installs anew.
fn mark(file: &Path) -> Result<()> {
    std::fs::write(file, b"").map_err(|e| Error::Build(format!("{}: {e}", file.display())))
}

/// The environment of an install: how to reach the package registries, never the daemon's
/// token or keys.
fn install_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        let name = name.to_string_lossy();
        INSTALL_ENV.contains(&name.as_ref())
            || PROXY_ENV.contains(&name.as_ref())
            || ["PIP_", "npm_config_", "NPM_CONFIG_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
    })
}

/// The environment of `cargo fetch`: how to reach the registry.
fn fetch_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        let name = name.to_string_lossy();
        FETCH_ENV.contains(&name.as_ref())
            || PROXY_ENV.contains(&name.as_ref())
            || ["RUSTUP_", "CARGO_REGISTRIES_", "CARGO_HTTP_", "CARGO_NET_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
    })
}

/// A directory for one pinned install of a tool, made anew unless a finished install is there.
/// Returns it, and whether it must be installed into.
/// Where `pin` of `tool` is installed under `tools`.
fn tool_dir(tools: &Path, tool: &str, pin: &str) -> PathBuf {
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
    tools.join(tool).join(slug)
}

/// The directory of `language`'s componentizer under `tools` when it is installed whole;
/// changes nothing.
pub fn componentizer_installed(language: Language, tools: &Path) -> Option<PathBuf> {
    let (tool, pin) = language.tool();
    let dir = tool_dir(tools, tool, pin);
    dir.join(".installed").exists().then_some(dir)
}

/// The directory `pin` of `tool` is installed in under `tools`, and whether it must be
/// installed (anything left of an install cut short is removed first).
fn install_dir(tools: &Path, tool: &str, pin: &str) -> Result<(PathBuf, bool)> {
    let dir = tool_dir(tools, tool, pin);
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
        .envs(install_env())
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
    isolation: Isolation,
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
    // The componentizer runs the app's top level to snapshot it: it is confined like a Rust
    // build, reading the system and its install, writing only the source's and the output's
    // directories.
    let out_dir = out.parent().unwrap_or(dir);
    let tmp = out_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::Build(format!("{}: {e}", tmp.display())))?;
    let (mut command, interpreter) = language.componentizer(tools, dir, &wit, out, &tmp)?;
    command.current_dir(dir);
    let mut jail = Jail::new().read(tools).write(dir).write(out_dir);
    for root in interpreter {
        jail = jail.read(root);
    }
    let output = run(&mut command, &jail, isolation, started, timeout)?;
    let log = format!("{}{}", output.stdout, output.stderr);
    if !output.status.success() {
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
