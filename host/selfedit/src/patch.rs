//! Patches and diffs of snapshots: a unified diff (one or more files) applied to a snapshot
//! with `diffy`, and the diff between two snapshots rendered with `similar`.

use crate::snapshot::{Snapshot, check_path};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The text is not a unified diff.
    Malformed(String),
    /// A file the patch names escapes the source.
    Escape(String),
    /// A hunk does not match the file.
    Conflict(String),
}

/// Apply a unified diff (one or more files; `a/` and `b/` prefixes are accepted) to a snapshot.
pub fn apply_patch(base: &Snapshot, diff: &str) -> std::result::Result<Snapshot, PatchError> {
    use diffy::patch_set::{FileOperation, ParseOptions, PatchSet};

    let mut result = base.clone();
    let mut any = false;
    for file in PatchSet::parse(diff, ParseOptions::unidiff()) {
        let file = file.map_err(|e| PatchError::Malformed(e.to_string()))?;
        any = true;
        let Some(patch) = file.patch().as_text() else {
            return Err(PatchError::Malformed(
                "binary patches are not accepted".to_string(),
            ));
        };
        // (read from, write to, keep the source file)
        let (from, to, keep) = match file.operation() {
            FileOperation::Create(path) => (None, Some(strip(path)), false),
            FileOperation::Delete(path) => (Some(strip(path)), None, false),
            FileOperation::Modify { original, modified } => {
                (Some(strip(original)), Some(strip(modified)), false)
            }
            FileOperation::Rename { from, to } => (Some(strip(from)), Some(strip(to)), false),
            FileOperation::Copy { from, to } => (Some(strip(from)), Some(strip(to)), true),
        };
        for path in from.iter().chain(to.iter()) {
            check_path(path).map_err(|_| PatchError::Escape(path.clone()))?;
        }
        let original = match &from {
            Some(path) => result
                .files
                .get(path)
                .cloned()
                .ok_or_else(|| PatchError::Conflict(format!("{path}: no such file")))?,
            None => String::new(),
        };
        let named = to.as_ref().or(from.as_ref()).cloned().unwrap_or_default();
        let patched = diffy::apply(&original, patch)
            .map_err(|e| PatchError::Conflict(format!("{named}: {e}")))?;
        if let Some(path) = &from
            && !keep
        {
            result.files.remove(path);
        }
        if let Some(path) = to {
            result.files.insert(path, patched);
        }
    }
    if !any {
        return Err(PatchError::Malformed(
            "no file changes found in the diff".to_string(),
        ));
    }
    Ok(result)
}

/// A path from a diff header without its `a/` or `b/` prefix.
fn strip(path: &str) -> String {
    path.strip_prefix("a/")
        .or_else(|| path.strip_prefix("b/"))
        .unwrap_or(path)
        .to_string()
}

/// A unified diff from `old` to `new`, file by file, with `a/` and `b/` prefixes.
pub fn diff(old: &Snapshot, new: &Snapshot) -> String {
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> =
        old.files.keys().chain(new.files.keys()).collect();
    for path in paths {
        let before = old.files.get(path);
        let after = new.files.get(path);
        if before == after {
            continue;
        }
        let (from, to) = (
            before.map_or("/dev/null".to_string(), |_| format!("a/{path}")),
            after.map_or("/dev/null".to_string(), |_| format!("b/{path}")),
        );
        let text = similar::TextDiff::from_lines(
            before.map(String::as_str).unwrap_or(""),
            after.map(String::as_str).unwrap_or(""),
        );
        out.push_str(
            &text
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_diff_applies_back_to_its_source() {
        let old = snapshot(&[("src/lib.rs", "a\nb\nc\n"), ("gone.txt", "x\n")]);
        let new = snapshot(&[("src/lib.rs", "a\nB\nc\n"), ("new.txt", "y\n")]);
        let patch = diff(&old, &new);
        assert!(patch.contains("--- a/src/lib.rs"), "{patch}");
        assert_eq!(apply_patch(&old, &patch), Ok(new));
    }

    #[test]
    fn a_patch_that_escapes_is_refused() {
        let base = snapshot(&[("src/lib.rs", "a\n")]);
        let escape = "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(matches!(
            apply_patch(&base, escape),
            Err(PatchError::Escape(_))
        ));
    }

    #[test]
    fn a_patch_that_does_not_match_conflicts() {
        let base = snapshot(&[("src/lib.rs", "one\ntwo\n")]);
        let patch = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,2 @@\n-uno\n+ONE\n two\n";
        assert!(matches!(
            apply_patch(&base, patch),
            Err(PatchError::Conflict(_))
        ));
        assert!(matches!(
            apply_patch(&base, "not a diff"),
            Err(PatchError::Malformed(_))
        ));
    }
}
