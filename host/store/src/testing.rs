//! A PostgreSQL server for tests: the server named by `OVERSEER_TEST_DATABASE_URL` when it is
//! set, else one started once per test process from the machine's PostgreSQL (`initdb` and
//! `postgres`, found on `PATH` or under `/usr/lib/postgresql/*/bin`), on a free loopback port,
//! in a temporary directory, as the `postgres` user when the tests run as root (PostgreSQL
//! refuses to run as root). Every caller gets a database of its own.
//!
//! The server is stopped, and its directory removed, when the test process exits, however it
//! exits: a shell beside it waits on a pipe that only the process's end closes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// The environment variable that names an existing server to test against
/// (`postgres://user:password@host:port/database`); each test creates a database on it.
pub const DATABASE_URL_ENV: &str = "OVERSEER_TEST_DATABASE_URL";

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Server {
    /// Where to connect to create databases.
    admin_url: String,
    /// Held open for the life of the process; its end stops the server.
    _stdin: Mutex<Option<ChildStdin>>,
    _child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The URL of a new, empty database on the test server.
///
/// Panics with the reason when no server can be had: PostgreSQL is part of what the tests need
/// (`.ci/run` installs it).
pub async fn database() -> String {
    let server = SERVER.get_or_init(|| match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => Ok(Server {
            admin_url: url,
            _stdin: Mutex::new(None),
            _child: Mutex::new(None),
        }),
        _ => start(),
    });
    let server = match server {
        Ok(server) => server,
        Err(e) => panic!("no PostgreSQL server for the tests: {e}"),
    };
    let name = format!("overseer_{}", uuid::Uuid::new_v4().simple());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let attempt = async {
            let mut admin = sqlx::PgConnection::connect(&server.admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        match attempt.await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "test PostgreSQL not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create a test database: {e}"),
        }
    }
    with_database(&server.admin_url, &name)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

fn start() -> Result<Server, String> {
    let bin = binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("overseer-pg-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    let account = if running_as_root() {
        let account = account("postgres")
            .ok_or("the tests run as root and there is no `postgres` user to run PostgreSQL as")?;
        std::os::unix::fs::chown(&dir, Some(account.0), Some(account.1))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        Some(account)
    } else {
        None
    };
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "overseer", "-A", "trust", "-E", "UTF8", "--no-locale"])
        .arg("--no-sync")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_account(&mut initdb, account);
    let output = initdb
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // A fast shutdown (SIGINT) once the pipe closes, then the directory goes.
    let script = r#""$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c max_connections=400 >"$4/server.log" 2>&1 &
pid=$!
cat >/dev/null
kill -INT "$pid"
wait "$pid"
rm -rf "$4""#;
    let mut server = Command::new("sh");
    server
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(bin.join("postgres"))
        .arg(&data)
        .arg(port.to_string())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    as_account(&mut server, account);
    let mut child = server
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let stdin = child.stdin.take();
    wait_for_port(port, &dir, &mut child)?;
    Ok(Server {
        admin_url: format!("postgres://overseer@127.0.0.1:{port}/postgres"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(Some(child)),
    })
}

fn wait_for_port(port: u16, dir: &Path, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut log = String::new();
            let _ = std::fs::File::open(dir.join("server.log"))
                .and_then(|mut f| f.read_to_string(&mut log));
            return Err(format!("postgres exited ({status}): {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "postgres did not listen on {port} within {START_TIMEOUT:?}"
    ))
}

fn as_account(command: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

/// The directory that holds both `initdb` and `postgres`.
fn binaries() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    // The newest major version first.
    installed.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    candidates.extend(installed);
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or_else(|| {
            format!(
                "PostgreSQL's initdb and postgres were not found on PATH or under /usr/lib/postgresql; \
                 install PostgreSQL (Debian: postgresql) or set {DATABASE_URL_ENV}"
            )
        })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of a local account, from `/etc/passwd`.
fn account(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
