//! The sandbox every build runs in. A build compiles code its author controls (build scripts,
//! procedural macros, `include_str!`, a componentizer running the app's top level), so it is
//! confined by what the kernel offers an unprivileged process:
//!
//! - **Landlock** (ABI ≥ 3, Linux ≥ 6.2, `landlock` crate): the build may read and execute
//!   only the system's programs and libraries, the toolchain, the dependency cache and its own
//!   sources; it may write only its scratch and target directories. The daemon's data directory (the
//!   token, the database, the compile cache and its key) is neither readable nor writable.
//!   Landlock also forbids ptrace-class access to processes outside the sandbox, so
//!   `/proc/<daemon>/environ` and `/proc/<daemon>/mem` are closed; with Landlock ABI ≥ 6 the
//!   build can neither signal the daemon nor reach its abstract Unix sockets.
//! - **A user namespace and a network namespace** (`unshare(2)`): no network at all, not even
//!   the daemon's port on loopback, and no capability of the daemon's user in the host's
//!   namespaces (a daemon running as root builds without root's capabilities; Landlock, not
//!   file ownership, keeps it out of the data directory).
//! - **Seccomp filters** (`seccompiler` crate) that refuse to create Unix-domain sockets
//!   (Landlock up to ABI 7 does not govern connecting to a socket file, and a local PostgreSQL,
//!   or any daemon listening on a socket the build can name, would otherwise be reachable;
//!   `socketpair` stays allowed), user namespaces (where a process would hide from the kill)
//!   and io_uring (whose operations bypass seccomp).
//! - **Its own process group**, with `PR_SET_PDEATHSIG`: a build that times out, or is running
//!   when the daemon stops, is killed whole — its process group and every process left in its
//!   user namespace.
//!
//! Where Landlock or user namespaces are missing, builds are refused with
//! [`Error::Isolation`](crate::Error::Isolation) unless isolation is turned off in the
//! configuration ([`Isolation::Off`]).

// Confining a child takes system calls between fork and exec (`Command::pre_exec`), which std
// has no safe form of; each block says what it relies on.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, LandlockStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether builds must run isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Every build runs in the sandbox; where the kernel cannot provide one, builds are
    /// refused.
    #[default]
    Required,
    /// Builds run as the daemon's user, with only a minimal environment and their own process
    /// group. For machines without Landlock or user namespaces, where every source is trusted.
    Off,
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "required" => Ok(Isolation::Required),
            "off" => Ok(Isolation::Off),
            other => Err(format!(
                "build isolation {other:?}: expected \"required\" or \"off\""
            )),
        }
    }
}

/// The filesystem rights Landlock is asked to handle: everything up to ABI 5 (device ioctls).
const FS_ABI: ABI = ABI::V5;

/// What the kernel offers for isolating builds, probed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// The Landlock ABI the kernel speaks, when Landlock is enabled.
    pub landlock_abi: Option<i32>,
    /// Whether this process may create user and network namespaces.
    pub namespaces: bool,
    /// Why isolation is unavailable, when it is.
    pub problem: Option<String>,
}

impl Support {
    /// One line for the start of the daemon and `overseer doctor`.
    pub fn describe(&self) -> String {
        match (&self.problem, self.landlock_abi) {
            (None, Some(abi)) => format!(
                "builds isolated: Landlock ABI {abi}, user and network namespaces, own process group"
            ),
            (Some(problem), _) => format!("builds cannot be isolated: {problem}"),
            (None, None) => "builds cannot be isolated".to_string(),
        }
    }

    pub fn available(&self) -> bool {
        self.problem.is_none()
    }
}

/// Probe the kernel (once per process): enforce an empty Landlock ruleset on a throwaway
/// thread, and start `true` in fresh user and network namespaces.
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let landlock = std::thread::spawn(|| {
            let ruleset = Ruleset::default()
                .handle_access(AccessFs::from_all(FS_ABI))
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self());
            match ruleset {
                Ok(status) => match (status.ruleset, status.landlock) {
                    (RulesetStatus::NotEnforced, _) => Err("Landlock is not enforced".to_string()),
                    (_, LandlockStatus::Available { effective_abi, kernel_abi }) => {
                        Ok(kernel_abi.unwrap_or(effective_abi as i32))
                    }
                    (_, other) => Err(format!("Landlock: {other:?}")),
                },
                Err(e) => Err(format!("Landlock: {e}")),
            }
        })
        .join()
        .unwrap_or_else(|_| Err("the Landlock probe panicked".to_string()));
        // The whole sandbox, around `true`.
        let namespaces = {
            let mut probe = Command::new("true");
            probe
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            match Jail::new().read("/usr").apply(&mut probe) {
                Ok(()) => probe.status().map(|s| s.success()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let problem = match (&landlock, &namespaces) {
            (Err(e), _) => Some(format!(
                "{e}; Landlock needs Linux 5.13 or later with `landlock` in the kernel's `lsm=` list"
            )),
            // ABI 3 (Linux 6.2) governs truncate(2): below it a build could empty the token,
            // the database or the cache key.
            (Ok(abi), _) if *abi < 3 => Some(format!(
                "Landlock ABI {abi} cannot keep a build from truncating files; ABI 3 (Linux 6.2) or later is needed"
            )),
            (_, Ok(true)) => None,
            (_, Ok(false)) | (_, Err(_)) => Some(format!(
                "user namespaces are not available ({}); allow them with `sysctl kernel.unprivileged_userns_clone=1` (Debian), `sysctl kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 23.10 and later) or `user.max_user_namespaces`",
                match &namespaces {
                    Err(e) => e.clone(),
                    Ok(_) => "a process in the sandbox failed to start".to_string(),
                }
            )),
        };
        Support {
            landlock_abi: landlock.ok(),
            namespaces: matches!(namespaces, Ok(true)),
            problem,
        }
    })
}

/// What one build may touch. Paths that do not exist are skipped.
#[derive(Debug, Clone, Default)]
pub struct Jail {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    network: bool,
}

/// The parts of the system every build reads: programs, libraries, the dynamic linker's
/// configuration, time zones and certificates, `/proc` and `/sys` (the kernel's own checks keep
/// other processes' secrets out of reach), and the harmless devices.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/proc",
    "/sys",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

impl Jail {
    /// A jail that reads the system (see `SYSTEM_READ`), writes `/dev/null` and nothing else,
    /// and has no network.
    pub fn new() -> Jail {
        let mut jail = Jail::default();
        jail.read.extend(SYSTEM_READ.iter().map(PathBuf::from));
        jail.write.push(PathBuf::from("/dev/null"));
        jail
    }

    /// Also read and execute below `path`.
    pub fn read(mut self, path: impl Into<PathBuf>) -> Jail {
        self.read.push(path.into());
        self
    }

    /// Also read, write and execute below `path`.
    pub fn write(mut self, path: impl Into<PathBuf>) -> Jail {
        self.write.push(path.into());
        self
    }

    /// Keep the network (for fetching dependencies, which runs no code of the build's author).
    pub fn with_network(mut self) -> Jail {
        self.network = true;
        self
    }

    /// Make `command` start inside this jail, in its own process group. With
    /// [`Isolation::Off`] only the process group applies.
    ///
    /// # Errors
    /// [`Error::Isolation`] when isolation is required and the kernel cannot provide it, or the
    /// Landlock ruleset cannot be built.
    pub fn confine(&self, command: &mut Command, isolation: Isolation) -> Result<()> {
        command.process_group(0);
        if isolation == Isolation::Off {
            return Ok(());
        }
        let support = support();
        if let Some(problem) = &support.problem {
            return Err(Error::Isolation(format!(
                "{problem}. Builds run code from the agent's source and are refused without \
                 isolation; to run them unisolated anyway, set `build_isolation = \"off\"` in \
                 the configuration (or OVERSEER_BUILD_ISOLATION=off)"
            )));
        }
        self.apply(command)
    }

    /// Landlock, the namespaces and the seccomp filters, set up for `command`'s child.
    fn apply(&self, command: &mut Command) -> Result<()> {
        let existing = |paths: &[PathBuf]| -> Vec<PathBuf> {
            let mut paths: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
            paths.sort();
            paths.dedup();
            paths
        };
        let landlock = |e: landlock::RulesetError| Error::Isolation(format!("Landlock: {e}"));
        let ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(FS_ABI))
            .map_err(landlock)?
            // Signals and abstract Unix sockets are scoped from ABI 6; older kernels skip it.
            .set_compatibility(CompatLevel::BestEffort)
            .scope(Scope::from_all(ABI::V6))
            .map_err(landlock)?
            .create()
            .map_err(landlock)?
            .add_rules(path_beneath_rules(
                existing(&self.read),
                AccessFs::from_read(FS_ABI),
            ))
            .map_err(landlock)?
            .add_rules(path_beneath_rules(
                existing(&self.write),
                AccessFs::from_all(FS_ABI),
            ))
            .map_err(landlock)?;
        let mut ruleset = Some(ruleset);
        let (refused, missing) = seccomp_filters()?;
        enter_namespaces(command, self.network);
        // SAFETY: runs in the child between fork and exec. It calls only `restrict_self`, which
        // makes two system calls (`prctl`, `landlock_restrict_self`), and `apply_filter`, which
        // makes two more (`prctl`, `seccomp`), on memory the parent prepared; neither allocates
        // on its success path.
        unsafe {
            command.pre_exec(move || {
                let ruleset = ruleset
                    .take()
                    .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
                match ruleset.restrict_self() {
                    Ok(status) if status.ruleset != RulesetStatus::NotEnforced => {}
                    _ => return Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                }
                for filter in [&refused, &missing] {
                    seccompiler::apply_filter(filter)
                        .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
                }
                Ok(())
            });
        }
        Ok(())
    }
}

/// The seccomp programs of a build:
/// - refused with `EACCES`: creating a Unix-domain socket (`socket(AF_UNIX, …)`; Landlock up to
///   ABI 7 does not govern connecting to a socket file), creating a user namespace
///   (`unshare` or `clone` with `CLONE_NEWUSER`: a process in a namespace of its own would
///   escape the kill of the build), and io_uring (whose operations would open sockets past
///   the filter);
/// - `clone3`, answered `ENOSYS`: its flags are out of a filter's reach, and the C library
///   falls back to `clone` on `ENOSYS`.
///
/// Every other system call is allowed.
fn seccomp_filters() -> Result<(seccompiler::BpfProgram, seccompiler::BpfProgram)> {
    use seccompiler::{
        BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
        SeccompFilter, SeccompRule, TargetArch,
    };

    let problem = |e: BackendError| Error::Isolation(format!("seccomp: {e}"));
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(problem)?;
    let first_argument = |op: SeccompCmpOp, value: u64| -> Result<Vec<SeccompRule>> {
        let condition =
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, value).map_err(problem)?;
        Ok(vec![SeccompRule::new(vec![condition]).map_err(problem)?])
    };
    let new_user = libc::CLONE_NEWUSER as u64;
    let refused = SeccompFilter::new(
        [
            (
                libc::SYS_socket,
                first_argument(SeccompCmpOp::Eq, libc::AF_UNIX as u64)?,
            ),
            (
                libc::SYS_unshare,
                first_argument(SeccompCmpOp::MaskedEq(new_user), new_user)?,
            ),
            (
                libc::SYS_clone,
                first_argument(SeccompCmpOp::MaskedEq(new_user), new_user)?,
            ),
            (libc::SYS_io_uring_setup, Vec::new()),
            (libc::SYS_io_uring_enter, Vec::new()),
            (libc::SYS_io_uring_register, Vec::new()),
        ]
        .into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(problem)?;
    let missing = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(problem)?;
    Ok((
        refused.try_into().map_err(problem)?,
        missing.try_into().map_err(problem)?,
    ))
}

/// Make `command` start in new user and (unless `network`) network namespaces, mapping the
/// daemon's user and group to themselves, and die with the thread that started it.
fn enter_namespaces(command: &mut Command, network: bool) {
    // SAFETY: getuid and getgid take nothing and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("{uid} {uid} 1");
    let gid_map = format!("{gid} {gid} 1");
    let flags = libc::CLONE_NEWUSER | if network { 0 } else { libc::CLONE_NEWNET };
    // SAFETY: runs in the child between fork and exec; it makes only system calls (prctl,
    // unshare, open, write, close) on buffers prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            check(libc::unshare(flags))?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
            Ok(())
        });
    }
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `open(path, O_WRONLY)`, one `write`, `close`: safe between fork and exec.
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated, `bytes` outlives the calls.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A build that is running: its process group and the user namespace it started in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    pgid: i32,
    namespace: Option<String>,
}

static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

/// Set once the daemon stops: builds still waiting for their turn are not started.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`stop_all`] was called.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::Acquire)
}

/// A running build, registered so that [`stop_all`] can reach it; dropping it kills whatever
/// the build left behind.
#[derive(Debug)]
pub struct Tracked(Running);

impl Tracked {
    /// Register the build whose first process is `pid` (the leader of its process group).
    pub fn new(pid: u32) -> Tracked {
        let pgid = pid as i32;
        let namespace = std::fs::read_link(format!("/proc/{pid}/ns/user"))
            .ok()
            .map(|link| link.to_string_lossy().into_owned())
            .filter(|ns| Some(ns.as_str()) != own_namespace().as_deref());
        let running = Running { pgid, namespace };
        lock_running().push(running.clone());
        Tracked(running)
    }

    /// Kill every process of the build: its process group, then every process left in its
    /// user namespace (a build script that started a session of its own, say).
    pub fn kill(&self) {
        kill(&self.0);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        kill(&self.0);
        lock_running().retain(|r| r != &self.0);
    }
}

fn lock_running() -> std::sync::MutexGuard<'static, Vec<Running>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

fn own_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/user")
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

fn kill(running: &Running) {
    // SAFETY: kill(2) with a negative pid signals the process group; a stale group answers
    // ESRCH.
    unsafe {
        libc::kill(-running.pgid, libc::SIGKILL);
    }
    let Some(namespace) = &running.namespace else {
        return;
    };
    // A process may fork while the list is read: go round until none is left (a build cannot
    // make namespaces of its own to hide in; the seccomp filter refuses them).
    for _ in 0..100 {
        let mut found = false;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let link = std::fs::read_link(format!("/proc/{pid}/ns/user"));
            if link.is_ok_and(|l| l.to_string_lossy() == namespace.as_str()) {
                found = true;
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if !found {
            break;
        }
    }
}

/// Kill every running build and start no more, as the daemon stops.
pub fn stop_all() {
    STOPPING.store(true, std::sync::atomic::Ordering::Release);
    let running = lock_running().clone();
    for build in &running {
        kill(build);
    }
}

/// The toolchain's root (`rustc --print sysroot`), read once.
pub fn sysroot() -> Option<&'static Path> {
    static SYSROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    SYSROOT
        .get_or_init(|| {
            let output = Command::new("rustc")
                .args(["--print", "sysroot"])
                .output()
                .ok()?;
            let text = String::from_utf8(output.stdout).ok()?;
            let path = PathBuf::from(text.trim());
            (output.status.success() && path.is_dir()).then_some(path)
        })
        .as_deref()
}

/// Where cargo keeps its registry and git checkouts: `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}
