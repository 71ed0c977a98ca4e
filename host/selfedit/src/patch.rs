//! Patches and diffs of snapshots: a unified diff (one or more files) applied to a snapshot
//! with `diffy`, and the diff between two snapshots rendered with `similar`.
//!
//! Patches written by people and models come in every shape, and are read as tolerantly as
//! GNU patch reads them, each leniency named in [`Applied::notes`]: CRLF line endings are
//! normalised, a missing final newline is added, a hunk whose header counts disagree with its
//! body (or that has no numbers, `@@ @@`) is counted again from its body, and a hunk whose
//! context sits elsewhere in the file is applied where it matches, nearest the line it names
//! (GNU patch's offset; context lines are never ignored). A hunk that matches nowhere is
//! refused naming the hunk, the line, and what was expected and found there.

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

/// A patch applied, and what was done to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub snapshot: Snapshot,
    /// Each leniency: `line endings normalised to LF`, `hunk 2 of src/lib.rs: applied at
    /// line 14 (offset +3)`, …; empty for a patch taken as written.
    pub notes: Vec<String>,
}

/// Apply a unified diff (one or more files; `a/` and `b/` prefixes are accepted) to a snapshot.
pub fn apply_patch(base: &Snapshot, diff: &str) -> std::result::Result<Snapshot, PatchError> {
    apply_leniently(base, diff).map(|applied| applied.snapshot)
}

/// [`apply_patch`], saying what was done to read the patch.
pub fn apply_leniently(base: &Snapshot, diff: &str) -> std::result::Result<Applied, PatchError> {
    let (diff, notes) = normalise(base, diff)?;
    Ok(Applied {
        snapshot: apply_exact(base, &diff)?,
        notes,
    })
}

/// One hunk header's numbers: `@@ -start,count +start,count @@rest`.
struct Header {
    old_start: Option<usize>,
    old_count: Option<usize>,
    rest: String,
}

fn parse_header(line: &str) -> Option<Header> {
    let body = line.strip_prefix("@@")?;
    let close = body.find("@@")?;
    let (ranges, rest) = (&body[..close], &body[close + 2..]);
    let mut old_start = None;
    let mut old_count = None;
    for part in ranges.split_whitespace() {
        if let Some(old) = part.strip_prefix('-') {
            let mut numbers = old.split(',');
            old_start = numbers.next().and_then(|n| n.parse().ok());
            old_count = Some(numbers.next().map_or(Some(1), |n| n.parse().ok())?);
        }
    }
    Some(Header {
        old_start,
        old_count,
        rest: rest.trim_end_matches('\n').to_string(),
    })
}

/// Where `old` (the hunk's context and removed lines) sits in `file`: at `stated` (0-based)
/// when it matches there, else the match nearest to it.
fn locate(file: &[&str], old: &[String], stated: Option<usize>) -> Option<usize> {
    let matches_at = |at: usize| {
        at + old.len() <= file.len() && old.iter().zip(&file[at..]).all(|(a, b)| a == b)
    };
    if let Some(at) = stated
        && matches_at(at)
    {
        return Some(at);
    }
    let target = stated.unwrap_or(0);
    (0..=file.len().saturating_sub(old.len()))
        .filter(|at| matches_at(*at))
        .min_by_key(|at| at.abs_diff(target))
}

/// The first line of `old` that differs from `file` at `at`, as the refusal names it.
fn mismatch(file: &[&str], old: &[String], at: usize) -> String {
    for (n, expected) in old.iter().enumerate() {
        match file.get(at + n) {
            Some(found) if found == expected => {}
            Some(found) => {
                return format!(
                    "at line {}: expected {expected:?}, found {found:?}",
                    at + n + 1
                );
            }
            None => {
                return format!(
                    "at line {}: expected {expected:?}, but the file has {} lines",
                    at + n + 1,
                    file.len()
                );
            }
        }
    }
    "the hunk's lines are nowhere in the file".to_string()
}

/// The patch rewritten so that `diffy` takes it: LF endings, a final newline, every hunk's
/// header counted from its body and placed where its context is. Errors name the hunk.
fn normalise(
    base: &Snapshot,
    diff: &str,
) -> std::result::Result<(String, Vec<String>), PatchError> {
    let mut notes = Vec::new();
    let mut text = diff.to_string();
    if text.contains('\r') {
        text = text.replace("\r\n", "\n");
        notes.push("line endings normalised to LF".to_string());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
        notes.push("a final newline added".to_string());
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut file: Option<String> = None;
    let mut hunk = 0;
    let mut delta: isize = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("--- ") && lines.get(i + 1).is_some_and(|l| l.starts_with("+++ ")) {
            // Both names are checked before anything is read: none may leave the source.
            for named in [line, lines[i + 1]] {
                let path = named[4..].split('\t').next().unwrap_or_default().trim();
                if path != "/dev/null" {
                    let path = strip(path);
                    check_path(&path).map_err(|_| PatchError::Escape(path.clone()))?;
                }
            }
            let path = line[4..].split('\t').next().unwrap_or_default().trim();
            file = (path != "/dev/null").then(|| strip(path));
            hunk = 0;
            delta = 0;
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let Some(header) = line.starts_with("@@").then(|| parse_header(line)).flatten() else {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        };
        hunk += 1;
        let named = file.clone().unwrap_or_else(|| "a new file".to_string());
        // The body: up to the next header, file header or line that is no hunk line.
        let mut body: Vec<String> = Vec::new();
        let mut j = i + 1;
        while j < lines.len() {
            let l = lines[j];
            let next_file =
                l.starts_with("--- ") && lines.get(j + 1).is_some_and(|n| n.starts_with("+++ "));
            if l.starts_with("@@") || next_file || l.starts_with("diff ") {
                break;
            }
            match l.chars().next() {
                Some(' ' | '+' | '-' | '\\') => body.push(l.to_string()),
                // A blank line in a hunk is an empty context line (editors strip the space).
                None => body.push(" ".to_string()),
                Some(_) => break,
            }
            j += 1;
        }
        let old: Vec<String> = body
            .iter()
            .filter(|l| l.starts_with(' ') || l.starts_with('-'))
            .map(|l| l[1..].to_string())
            .collect();
        let new_count = body
            .iter()
            .filter(|l| l.starts_with(' ') || l.starts_with('+'))
            .count();
        let content = file
            .as_ref()
            .and_then(|f| base.files.get(f))
            .map(String::as_str)
            .unwrap_or("");
        let file_lines: Vec<&str> = content.lines().collect();
        let stated = header.old_start.map(|s| s.saturating_sub(1));
        let start = if old.is_empty() {
            // Only added lines: they go where the header says.
            header.old_start.ok_or_else(|| {
                PatchError::Malformed(format!(
                    "hunk {hunk} of {named} adds lines but names no line to add them at"
                ))
            })?
        } else {
            let at = locate(&file_lines, &old, stated).ok_or_else(|| {
                PatchError::Conflict(format!(
                    "hunk {hunk} of {named} does not apply: {}",
                    mismatch(&file_lines, &old, stated.unwrap_or(0))
                ))
            })?;
            match stated {
                None => notes.push(format!(
                    "hunk {hunk} of {named}: no line numbers; placed at line {}",
                    at + 1
                )),
                Some(s) if s != at => notes.push(format!(
                    "hunk {hunk} of {named}: applied at line {} (offset {:+})",
                    at + 1,
                    at as isize - s as isize
                )),
                _ => {}
            }
            at + 1
        };
        if header.old_start.is_some() && header.old_count != Some(old.len()) {
            notes.push(format!(
                "hunk {hunk} of {named}: counts recomputed from its body"
            ));
        }
        let new_start = (start as isize + delta).max(0);
        out.push_str(&format!(
            "@@ -{start},{} +{new_start},{new_count} @@{}\n",
            old.len(),
            header.rest
        ));
        for l in &body {
            out.push_str(l);
            out.push('\n');
        }
        delta += new_count as isize - old.len() as isize;
        i = j;
    }
    Ok((out, notes))
}

fn apply_exact(base: &Snapshot, diff: &str) -> std::result::Result<Snapshot, PatchError> {
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
        assert_eq!(
            apply_leniently(&old, &patch).map(|a| (a.snapshot, a.notes)),
            Ok((new, Vec::new()))
        );
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

    /// Answers as people and models write them: each applies, naming what was read leniently.
    #[test]
    fn patches_are_read_as_tolerantly_as_gnu_patch_reads_them() {
        let source =
            "fn main() {\n    let a = 1;\n    let b = 2;\n    println!(\"{}\", a + b);\n}\n";
        let base = snapshot(&[("src/lib.rs", source)]);
        let fixed = source.replace("let b = 2;", "let b = 3;");
        let exact = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -2,3 +2,3 @@\n     let a = 1;\n-    let b = 2;\n+    let b = 3;\n     println!(\"{}\", a + b);\n";
        let cases: Vec<(&str, String, &[&str])> = vec![
            ("as written", exact.to_string(), &[]),
            (
                "CRLF",
                exact.replace('\n', "\r\n"),
                &["line endings normalised"],
            ),
            (
                "no final newline",
                exact.trim_end().to_string(),
                &["final newline"],
            ),
            (
                "wrong counts",
                exact.replace("@@ -2,3 +2,3 @@", "@@ -2,7 +2,9 @@"),
                &["counts recomputed"],
            ),
            (
                "no numbers",
                exact.replace("@@ -2,3 +2,3 @@", "@@ @@"),
                &["no line numbers; placed at line 2"],
            ),
            (
                "shifted",
                exact.replace("@@ -2,3 +2,3 @@", "@@ -1,3 +1,3 @@"),
                &["applied at line 2 (offset +1)"],
            ),
            (
                "git headers",
                format!(
                    "diff --git a/src/lib.rs b/src/lib.rs\nindex 83db48f..bf269f4 100644\n{exact}"
                ),
                &[],
            ),
            (
                "CRLF, no final newline and wrong counts",
                exact
                    .replace("@@ -2,3 +2,3 @@", "@@ -2,4 +2,4 @@")
                    .replace('\n', "\r\n")
                    .trim_end()
                    .to_string(),
                &["line endings", "final newline", "counts recomputed"],
            ),
        ];
        for (shape, patch, noted) in cases {
            let applied =
                apply_leniently(&base, &patch).unwrap_or_else(|e| panic!("{shape}: {e:?}"));
            assert_eq!(applied.snapshot.files["src/lib.rs"], fixed, "{shape}");
            for note in noted {
                assert!(
                    applied.notes.iter().any(|n| n.contains(note)),
                    "{shape}: {:?}",
                    applied.notes
                );
            }
            if noted.is_empty() {
                assert!(applied.notes.is_empty(), "{shape}: {:?}", applied.notes);
            }
        }
    }

    #[test]
    fn a_blank_context_line_without_its_space_is_still_context() {
        let base = snapshot(&[("f.txt", "a\n\nb\n")]);
        let patch = "--- a/f.txt\n+++ b/f.txt\n@@ -1,3 +1,3 @@\n a\n\n-b\n+B\n";
        let applied = apply_leniently(&base, patch).unwrap();
        assert_eq!(applied.snapshot.files["f.txt"], "a\n\nB\n");
    }

    #[test]
    fn a_patch_that_does_not_match_conflicts() {
        let base = snapshot(&[("src/lib.rs", "one\ntwo\n")]);
        let patch = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,2 @@\n-uno\n+ONE\n two\n";
        // The refusal names the hunk, the line, and what was expected and found.
        match apply_patch(&base, patch) {
            Err(PatchError::Conflict(message)) => assert_eq!(
                message,
                "hunk 1 of src/lib.rs does not apply: at line 1: expected \"uno\", found \"one\""
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            apply_patch(&base, "not a diff"),
            Err(PatchError::Malformed(_))
        ));
    }
}

/// Bounded property runs of the patch reader (the fuzz target `diff` runs it unbounded).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Lines a diff is made of, in any order and any mix.
    fn diff_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "(---|\\+\\+\\+) (a/|b/)?(src/lib\\.rs|\\.\\./x|/etc/passwd|src/[a-z]{1,4}\\.rs|)",
            "@@ -[0-9]{1,20}(,[0-9]{1,20})? \\+[0-9]{1,20}(,[0-9]{1,20})? @@",
            "[ +\\-][a-z{}();]{0,12}",
            "\\\\ No newline at end of file",
            "\\PC{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the text, a patch either applies within the source tree or is refused.
        #[test]
        fn any_diff_applies_inside_the_tree_or_is_refused(
            lines in prop::collection::vec(diff_line(), 0..40),
            crlf in any::<bool>(),
        ) {
            let base = Snapshot {
                files: [("src/lib.rs".to_string(), "a\nb\nc\nd\n".to_string())].into(),
            };
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            if let Ok(applied) = apply_leniently(&base, &text) {
                for path in applied.snapshot.files.keys() {
                    prop_assert!(crate::snapshot::check_path(path).is_ok(), "{}", path);
                }
            }
        }

        /// A diff made by [`diff`] applies back exactly.
        #[test]
        fn a_made_diff_applies_back(old in "([a-z]{0,6}\n){0,12}", new in "([a-z]{0,6}\n){0,12}") {
            let a = Snapshot { files: [("src/lib.rs".to_string(), old)].into() };
            let b = Snapshot { files: [("src/lib.rs".to_string(), new)].into() };
            let patch = diff(&a, &b);
            if a != b {
                prop_assert_eq!(apply_patch(&a, &patch).unwrap(), b);
            }
        }
    }
}
