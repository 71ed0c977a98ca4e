//! `overseer doctor`: what `serve` and builds need on this machine, checked one by one without
//! installing or creating anything, each problem named with its fix.

use std::path::{Path, PathBuf};
use std::process::Command;

use overseer_selfedit::builder::{self, Language};
use overseer_selfedit::{Isolation, isolation};

use crate::config::{Config, ServeArgs};

/// Free space on the data directory's disk below which builds warn: a Rust agent's target
/// directory takes a few hundred MiB, the componentizers about 300 MiB.
const LOW_DISK_BYTES: u64 = 2 << 30;

/// Free space below which the daemon would fail to write its database and builds.
const FULL_DISK_BYTES: u64 = 256 << 20;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, with something the user should know (a componentizer installed on first use).
    Warn,
    /// `serve` or a build would fail.
    Fail,
}

/// One line of the report: what was checked, how it came out, and the fix when it failed.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Run every check against the configuration `args` describe, print one line per check (and
/// its fix), and fail when any check failed.
///
/// # Errors
/// When a check failed: `serve` or builds would not work as configured.
pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let checks = checks(args).await;
    for check in &checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("{status:<5}{:<16}{}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("{:<21}fix: {fix}", "");
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        println!("everything serve and builds need is here");
        Ok(())
    } else {
        anyhow::bail!("{} check(s) failed: {}", failed.len(), failed.join(", "))
    }
}

/// Every check, in the order a user would fix them.
pub async fn checks(args: &ServeArgs) -> Vec<Check> {
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            return vec![Check::fail(
                "configuration",
                format!("{e:#}"),
                "correct the file, flag or OVERSEER_* variable named above",
            )];
        }
    };
    let tools = config
        .tools_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("tools"));
    let mut checks = vec![toolchain(), wasm_target()];
    checks.push(componentizer(
        Language::Python,
        &tools,
        &["python3"],
        "apt-get install python3 python3-venv",
    ));
    checks.push(componentizer(
        Language::JavaScript,
        &tools,
        &["node", "npm"],
        "apt-get install nodejs npm",
    ));
    checks.push(build_isolation(config.build_isolation));
    checks.push(database(&config).await);
    checks.push(disk(&config.data_dir));
    checks.push(listener(&config).await);
    checks
}

/// The first line `program --version` prints, when it runs.
fn version(program: &str) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

fn toolchain() -> Check {
    match (version("rustc"), version("cargo")) {
        (Some(rustc), Some(_)) => Check::ok("toolchain", rustc),
        (rustc, cargo) => Check::fail(
            "toolchain",
            format!(
                "{} not found on PATH",
                match (rustc, cargo) {
                    (None, None) => "rustc and cargo",
                    (None, _) => "rustc",
                    _ => "cargo",
                }
            ),
            "install Rust with rustup (https://rustup.rs)",
        ),
    }
}

fn wasm_target() -> Check {
    let target = builder::WASM_TARGET;
    match builder::wasm_target_installed() {
        Ok(true) => Check::ok("wasm target", format!("{target} installed")),
        Ok(false) => Check::fail(
            "wasm target",
            format!("{target} is not installed: no Rust agent can be built"),
            format!("rustup target add {target} (serve adds it itself when rustup may download)"),
        ),
        Err(e) => Check::fail(
            "wasm target",
            e.to_string(),
            "install Rust with rustup (https://rustup.rs)",
        ),
    }
}

fn componentizer(language: Language, tools: &Path, needs: &[&str], install: &str) -> Check {
    let name = match language {
        Language::Python => "python agents",
        Language::JavaScript => "js agents",
    };
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|program| version(program).is_none())
        .collect();
    if !missing.is_empty() {
        return Check::warn(
            name,
            format!(
                "{} not found: {} agents cannot be built",
                missing.join(" and "),
                language.name()
            ),
            install,
        );
    }
    if language == Language::Python && !python_has_venv() {
        return Check::warn(
            name,
            "python3 has no venv module: componentize-py cannot be installed",
            install,
        );
    }
    match builder::componentizer_installed(language, tools) {
        Some(dir) => Check::ok(
            name,
            format!("{} in {}", language.componentizer_pin(), dir.display()),
        ),
        None => Check::warn(
            name,
            format!(
                "{} is installed into {} on the first {} build",
                language.componentizer_pin(),
                tools.display(),
                language.name()
            ),
            match language {
                Language::Python => "let the daemon reach PyPI once, or build one agent now",
                Language::JavaScript => "let the daemon reach npm once, or build one agent now",
            },
        ),
    }
}

fn python_has_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build_isolation(required: Isolation) -> Check {
    let support = isolation::support();
    match (support.available(), required) {
        (true, _) => Check::ok("build isolation", support.describe()),
        (false, Isolation::Off) => Check::warn(
            "build isolation",
            format!(
                "{} (build_isolation = \"off\": builds run unisolated)",
                support.describe()
            ),
            "enable Landlock and unprivileged user namespaces to isolate builds",
        ),
        (false, Isolation::Required) => Check::fail(
            "build isolation",
            format!("{}: builds would be refused", support.describe()),
            "enable Landlock and unprivileged user namespaces (sysctl \
             kernel.unprivileged_userns_clone=1), or set build_isolation = \"off\" for trusted \
             sources only",
        ),
    }
}

async fn database(config: &Config) -> Check {
    let url = config.database_url();
    let shown = overseer_store::redact(&url);
    if let Some(file) = overseer_store::sqlite_path(&url)
        && !file.exists()
    {
        // Opening would create it: say whether serve could, and leave the disk as it is.
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let existing = nearest_existing(dir);
        return match writable(&existing) {
            true => Check::ok(
                "database",
                format!("{shown} does not exist yet; serve creates it"),
            ),
            false => Check::fail(
                "database",
                format!(
                    "{} is not writable: serve cannot create {shown}",
                    existing.display()
                ),
                "choose a writable --data-dir or --database",
            ),
        };
    }
    match overseer_store::Store::open(&url).await {
        Ok(_) => Check::ok("database", format!("{shown} opens")),
        Err(e) => Check::fail(
            "database",
            format!("{shown}: {e}"),
            "check --database (OVERSEER_DATABASE_URL): the server, its credentials and that the \
             database exists",
        ),
    }
}

/// `dir`, or its nearest ancestor that exists.
fn nearest_existing(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// Whether this process may create a file in `dir` (an unnamed temporary file, gone at once).
fn writable(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

fn disk(data_dir: &Path) -> Check {
    let Some(disk) = overseer_api::disk_holding(data_dir) else {
        return Check::warn(
            "disk",
            format!("no mounted disk found for {}", data_dir.display()),
            "check that the data directory is on a mounted file system",
        );
    };
    let free = disk.available_bytes;
    let detail = format!(
        "{} free on {} (the data directory's disk)",
        mib(free),
        disk.mount_point.display()
    );
    if free < FULL_DISK_BYTES {
        Check::fail(
            "disk",
            detail,
            format!(
                "free space or move --data-dir: the database and builds need at least {}",
                mib(FULL_DISK_BYTES)
            ),
        )
    } else if free < LOW_DISK_BYTES {
        Check::warn(
            "disk",
            detail,
            format!("builds may fill it: keep {} free", mib(LOW_DISK_BYTES)),
        )
    } else {
        Check::ok("disk", detail)
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

async fn listener(config: &Config) -> Check {
    let address = config.listen;
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => {
            drop(listener);
            Check::ok("listener", format!("{address} is free"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let health = format!("http://{address}/v1/health");
            let overseer = reqwest::Client::new()
                .get(&health)
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if overseer {
                Check::warn(
                    "listener",
                    format!("{address} is served by a running overseer"),
                    "stop it, or give this one another --listen",
                )
            } else {
                Check::fail(
                    "listener",
                    format!("{address} is in use by another program"),
                    "choose another --listen (OVERSEER_LISTEN)",
                )
            }
        }
        Err(e) => Check::fail(
            "listener",
            format!("cannot listen on {address}: {e}"),
            "choose another --listen (OVERSEER_LISTEN)",
        ),
    }
}
