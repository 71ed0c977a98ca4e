//! `overseer new` and `overseer build`: a new agent's source that builds as it is, and the build
//! of an agent's source directory into a component with the host's own builder. The templates
//! live in the guest SDK (`guest-sdk/rust`, `guest-sdk/python`, `guest-sdk/js`), built
//! into the binary; `{name}`, `{crate}`, `{dir}` and `{sdk}` are filled in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use overseer_kernel::check_name;
use overseer_selfedit::builder::{self, Artifact};
use overseer_selfedit::{Error, Isolation, Result};

/// The languages `overseer new` scaffolds.
pub const LANGUAGES: &[&str] = &["rust", "python", "js"];

const CARGO_TOML: &str = include_str!("../../../guest-sdk/rust/Cargo.toml.tmpl");

const AGENT_TOML: &str = include_str!("../../../guest-sdk/agent.toml.tmpl");

const LIB_RS: &str = include_str!("../../../guest-sdk/rust/lib.rs.tmpl");

/// The Python helper module written beside every Python agent.
const OVERSEER_PY: &str = include_str!("../../../guest-sdk/python/overseer.py");

const APP_PY: &str = include_str!("../../../guest-sdk/python/app.py.tmpl");

const APP_JS: &str = include_str!("../../../guest-sdk/js/app.js.tmpl");

/// The JavaScript helper module written beside every JavaScript agent.
const OVERSEER_JS: &str = include_str!("../../../guest-sdk/js/overseer.js");

const README_JS: &str = include_str!("../../../guest-sdk/js/README.md.tmpl");

const README_PY: &str = include_str!("../../../guest-sdk/python/README.md.tmpl");

const README_MD: &str = include_str!("../../../guest-sdk/rust/README.md.tmpl");

/// Write a new agent called `name` in `language` into `dir`, which must not exist yet.
/// `sdk` is the guest SDK (`guest-sdk/`) the agent depends on.
pub fn new_agent(name: &str, language: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>> {
    check_name(name)?;
    if language == "rust" && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::InvalidRequest(format!(
            "{name:?}: a Rust agent's name starts with a letter (it names the crate too)"
        )));
    }
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
    // Only a Rust agent depends on the guest SDK's crate.
    let sdk = match language {
        "rust" => sdk
            .canonicalize()
            .map_err(|e| Error::Internal(format!("the guest SDK at {}: {e}", sdk.display())))?,
        _ => sdk.to_path_buf(),
    };
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
            ("overseer.py", OVERSEER_PY.to_string()),
            ("agent.toml", fill(AGENT_TOML)),
            ("README.md", fill(README_PY)),
            (".gitignore", "target/\n__pycache__/\n".to_string()),
        ],
        "js" => vec![
            ("app.js", fill(APP_JS)),
            ("overseer.js", OVERSEER_JS.to_string()),
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
    isolation: Isolation,
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
            .and_then(|text| overseer_kernel::Manifest::parse(&text).ok())
            .and_then(|manifest| manifest.name)
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "agent".to_string());
        let out = target.join(format!("{name}.wasm"));
        let build = builder::componentize(language, &dir, &out, tools, timeout, isolation)?;
        return build
            .artifacts
            .into_iter()
            .next()
            .ok_or_else(|| Error::Build("the build made no component".to_string()));
    }
    let build = builder::build_rust(&dir, &target, &[], timeout, isolation)?;
    build
        .artifacts
        .into_iter()
        .find(|a| a.dir == dir)
        .ok_or_else(|| Error::Build(format!("the build of {} made no component", dir.display())))
}

/// What the build would freeze into a Python or JavaScript component (randomness, clocks and
/// ids made at the top level), as warning lines: the agent's `.py`, `.js` and `.mjs` files
/// under `dir`, skipping build output, dependencies and hidden directories.
pub fn build_time_warnings(dir: &Path) -> String {
    let mut sources = overseer_selfedit::Snapshot::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.')
                    && !["target", "node_modules", "__pycache__"].contains(&name.as_str())
                {
                    pending.push(path);
                }
            } else if kind.is_file()
                && builder::Language::of_file(&name).is_some()
                && let (Ok(relative), Ok(text)) =
                    (path.strip_prefix(dir), std::fs::read_to_string(&path))
            {
                sources
                    .files
                    .insert(relative.to_string_lossy().to_string(), text);
            }
        }
    }
    overseer_selfedit::analysis::warning_lines(&overseer_selfedit::analysis::build_time_state(
        &sources,
    ))
}

/// The guest SDK of the source tree this binary was built from.
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_counter_examples_are_warned_about() {
        for (language, app, quoted) in [("python", "app.py", "#     "), ("js", "app.js", "//     ")]
        {
            let temp = tempfile::tempdir().expect("temp dir");
            let dir = temp.path().join("counter");
            new_agent("counter", language, &dir, &sdk_dir()).expect("scaffold");
            let file = dir.join(app);
            let text = std::fs::read_to_string(&file).expect("the app");
            assert!(
                build_time_warnings(&dir).is_empty(),
                "the template itself is clean"
            );
            // The counter-examples the template quotes, put where they would run: the top level.
            let examples: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix(quoted))
                .collect();
            assert!(examples.len() >= 2, "{language}: {examples:?}");
            let with_examples = format!("{text}\n{}\n", examples.join("\n"));
            std::fs::write(&file, &with_examples).expect("write");
            let warnings = build_time_warnings(&dir);
            let first = text.lines().count() + 2;
            for (n, example) in examples.iter().enumerate() {
                let at = format!("warning: {app}:{}:", first + n);
                assert!(
                    warnings.lines().any(|w| w.starts_with(&at)),
                    "{example} is warned about at {at}:\n{warnings}"
                );
            }
            assert_eq!(warnings.lines().count(), examples.len(), "{warnings}");
        }
    }
}
