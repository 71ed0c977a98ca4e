//! `overseer serve` as a child process of the tests, on a port of its choosing: for what only a
//! separate process shows (a SIGKILL, its resident memory, its environment).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use overseer_tests::{Api, agents_dir, agents_target_dir, tools_dir};

/// The building settings every daemon of the tests shares: the warm target directory, the
/// installed componentizers and the agents' source.
pub fn build_settings() -> String {
    format!(
        "build_dir = {:?}\ntools_dir = {:?}\nagents_dir = {:?}\n",
        agents_target_dir(),
        tools_dir(),
        agents_dir()
    )
}

/// A daemon process; dropping it kills it.
pub struct Process {
    pub api: Api,
    child: Child,
}

impl Process {
    /// Run `overseer serve --listen 127.0.0.1:0 --no-bundled` on `data_dir`, reading `config`
    /// (TOML, written to `<data_dir>/overseer.toml`); `configure` adds flags and environment.
    /// Returns once the daemon listens.
    pub fn start(data_dir: &Path, config: &str, configure: impl FnOnce(&mut Command)) -> Process {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let file = data_dir.join("overseer.toml");
        std::fs::write(&file, config).expect("config file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_overseer-daemon"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bundled"])
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(data_dir)
            .env("OVERSEER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("the daemon starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the daemon prints");
        let url = line
            .trim()
            .strip_prefix("overseer listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        // Keep reading what it prints, so the pipe never fills.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Process {
            api: Api::new(url),
            child,
        }
    }

    /// Resident memory, in KiB (0 once the process is gone).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl std::ops::Deref for Process {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
