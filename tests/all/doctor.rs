//! `overseer doctor` and the daemon's log lines, as a user on a terminal or a log collector
//! sees them: the program run as a separate process.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DAEMON: &str = env!("CARGO_BIN_EXE_overseer-daemon");

/// The `rustc` the tests' PATH finds (rustup's proxy, usually), skipping `skip`.
fn real_rustc(skip: &Path) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir != skip)
        .map(|dir| dir.join("rustc"))
        .find(|rustc| rustc.is_file())
        .expect("rustc on PATH")
}

/// `overseer doctor` with `args`, its PATH led by `path_first` when given: its exit status
/// and what it printed.
fn doctor(data_dir: &Path, args: &[&str], path_first: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(DAEMON);
    command
        .arg("doctor")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("OVERSEER_CONFIG")
        .env("OVERSEER_LOG", "warn")
        .stdin(Stdio::null());
    if let Some(first) = path_first {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(
            std::iter::once(first.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap();
        command.env("PATH", joined);
    }
    let output = command.output().expect("doctor runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn doctor_names_a_missing_wasm_target_and_its_fix_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A toolchain without the wasm target: the real compiler, over a sysroot that holds no
    // standard library for any target.
    let bin = dir.path().join("bin");
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(sysroot.join("lib/rustlib")).unwrap();
    let shim = bin.join("rustc");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {:?} --sysroot {:?} \"$@\"\n",
            real_rustc(&bin),
            sysroot
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");

    let (passed, text) = doctor(&data, &["--listen", "127.0.0.1:0"], Some(&bin));
    assert!(!passed, "{text}");
    let target = text
        .lines()
        .skip_while(|line| !line.contains("wasm target"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(target.starts_with("FAIL"), "{text}");
    assert!(target.contains("wasm32-wasip2 is not installed"), "{text}");
    assert!(
        target.contains("fix: rustup target add wasm32-wasip2"),
        "{text}"
    );
    assert!(text.contains("1 check(s) failed: wasm target"), "{text}");
    // It installed nothing and made no data directory or database.
    assert!(!sysroot.join("lib/rustlib/wasm32-wasip2").exists());
    assert!(!data.exists(), "{text}");
    assert!(
        text.contains("does not exist yet; serve creates it"),
        "{text}"
    );

    // The same machine with the target: every check but the componentizers' is ok.
    let (passed, text) = doctor(&data, &["--listen", "127.0.0.1:0"], None);
    assert!(passed, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("wasm32-wasip2 installed")),
        "{text}"
    );
    for check in ["toolchain", "database", "disk", "listener"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {text}"
        );
    }
}

#[test]
fn doctor_names_a_listener_taken_by_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (passed, text) = doctor(dir.path(), &["--listen", &address], None);
    assert!(!passed, "{text}");
    assert!(
        text.contains(&format!("{address} is in use by another program")),
        "{text}"
    );
    assert!(text.contains("fix: choose another --listen"), "{text}");
}

/// Run `serve` with `format` until it listens, stop it, and answer what it wrote on stderr.
fn serve_log(format: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(DAEMON);
    if let Some(format) = format {
        command.args(["--log-format", format]);
    }
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bundled"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("OVERSEER_CONFIG")
        // Debug: the store's statements are logged on every start.
        .env("OVERSEER_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("serve starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("overseer listening on "), "{line:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_when_asked() {
    let text = serve_log(None);
    assert!(text.lines().any(|l| l.contains(" DEBUG ")), "{text}");
    assert!(!text.contains('\u{1b}'), "colour escapes in {text:?}");

    let json = serve_log(Some("json"));
    let lines: Vec<&str> = json.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["fields"].is_object(), "{line}");
    }
    assert!(!json.contains('\u{1b}'));
}
