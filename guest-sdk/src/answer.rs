//! What an agent reads out of a model's answer (the `answers` feature): the unified diff or
//! the JSON object in it, picked by the fence's language and by whether it parses, never by
//! position. Models wrap what was asked in prose, quote the code they were shown in other
//! fences, and end lines with CRLF; what they meant is still found.
//!
//! ```
//! use overseer_guest::answer;
//!
//! let text = "The bug is here:\n```rust\nlet x = a - b; // --- careful\n```\nFix:\n```diff\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-let x = a - b;\n+let x = a.saturating_sub(b);\n```\n";
//! assert!(answer::diff(text).unwrap().starts_with("--- a/src/lib.rs"));
//! assert_eq!(answer::json("Sure: {\"ok\": true}").unwrap()["ok"], true);
//! ```

use serde_json::Value;

/// One fenced block: its language (`diff`, `rust`, `json`, or empty) and its text, each line
/// ending in `\n` (a CRLF answer keeps its `\r`s for the patch reader to normalise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub lang: String,
    pub text: String,
}

/// Every fenced block of `answer`, in order. An unclosed fence runs to the end.
pub fn fenced(answer: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<Fenced> = None;
    for line in answer.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']).trim_start();
        match (&mut open, bare.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Fenced {
                    lang: lang.trim().to_ascii_lowercase(),
                    text: String::new(),
                });
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                blocks.extend(open.take());
            }
            (Some(block), _) => {
                block.text.push_str(line);
                if !line.ends_with('\n') {
                    block.text.push('\n');
                }
            }
            (None, None) => {}
        }
    }
    blocks.extend(open);
    blocks
}

/// Whether `text` reads as a unified diff: a `--- ` line right before a `+++ ` line, and a
/// hunk header.
fn reads_as_diff(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let headers = lines
        .windows(2)
        .any(|w| w[0].starts_with("--- ") && w[1].starts_with("+++ "));
    headers && lines.iter().any(|l| l.starts_with("@@"))
}

/// The unified diff in `answer`: a block fenced `diff` or `patch` that reads as one; else
/// any fenced block that does; else the text from the first `--- ` line that starts one.
pub fn diff(answer: &str) -> Option<String> {
    let blocks = fenced(answer);
    let by_lang = blocks
        .iter()
        .find(|b| matches!(b.lang.as_str(), "diff" | "patch") && reads_as_diff(&b.text));
    if let Some(block) = by_lang.or_else(|| blocks.iter().find(|b| reads_as_diff(&b.text))) {
        return Some(block.text.clone());
    }
    let lines: Vec<&str> = answer.split_inclusive('\n').collect();
    let start = lines
        .windows(2)
        .position(|w| w[0].starts_with("--- ") && w[1].starts_with("+++ "))?;
    let rest: String = lines[start..].concat();
    reads_as_diff(&rest).then_some(rest)
}

/// The JSON object in `answer`: a block fenced `json` that parses to one; else any fenced
/// block that does; else the whole answer, or the text from its first `{` to its last `}`.
pub fn json(answer: &str) -> Option<Value> {
    let object = |text: &str| {
        serde_json::from_str::<Value>(text.trim())
            .ok()
            .filter(Value::is_object)
    };
    let blocks = fenced(answer);
    blocks
        .iter()
        .filter(|b| b.lang == "json")
        .chain(blocks.iter().filter(|b| b.lang != "json"))
        .find_map(|b| object(&b.text))
        .or_else(|| object(answer))
        .or_else(|| {
            let (start, end) = (answer.find('{')?, answer.rfind('}')?);
            object(answer.get(start..=end)?)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-a\n+b\n";

    /// Answers as models write them, each with the diff it meant.
    #[test]
    fn the_diff_is_found_in_every_shape_of_answer() {
        let crlf = DIFF.replace('\n', "\r\n");
        let cases = [
            ("a bare diff", DIFF.to_string(), DIFF.to_string()),
            (
                "prose around a fence",
                format!("Here:\n```diff\n{DIFF}```\nDone."),
                DIFF.to_string(),
            ),
            (
                "quoted code first, with a --- in it",
                format!(
                    "The code:\n```rust\nlet a = 1; // --- old\n--- not a header\n```\nThe fix:\n```diff\n{DIFF}```\n"
                ),
                DIFF.to_string(),
            ),
            (
                "an unlabelled fence",
                format!("```\n{DIFF}```"),
                DIFF.to_string(),
            ),
            (
                "a patch fence",
                format!("```patch\n{DIFF}```"),
                DIFF.to_string(),
            ),
            (
                "CRLF fences",
                format!("Fix:\r\n```diff\r\n{crlf}```\r\n"),
                crlf.clone(),
            ),
            (
                "no closing fence",
                format!("```diff\n{DIFF}"),
                DIFF.to_string(),
            ),
            (
                "prose, then a bare diff",
                format!("Apply this.\n{DIFF}"),
                DIFF.to_string(),
            ),
            (
                "git headers",
                format!(
                    "```diff\ndiff --git a/src/lib.rs b/src/lib.rs\nindex 1..2 100644\n{DIFF}```"
                ),
                format!("diff --git a/src/lib.rs b/src/lib.rs\nindex 1..2 100644\n{DIFF}"),
            ),
        ];
        for (shape, answer, expected) in cases {
            assert_eq!(diff(&answer), Some(expected), "{shape}");
        }
        assert_eq!(diff("No diff here. --- really"), None);
        assert_eq!(diff("```rust\nfn main() {}\n```"), None);
    }

    #[test]
    fn the_json_is_found_by_its_fence_and_by_whether_it_parses() {
        assert_eq!(json("{\"a\": 1}").unwrap()["a"], 1);
        assert_eq!(json("Sure!\n```json\n{\"a\": 2}\n```").unwrap()["a"], 2);
        // A fence that does not parse is passed over for one that does.
        let two = "```json\n{not json}\n```\nor\n```\n{\"a\": 3}\n```";
        assert_eq!(json(two).unwrap()["a"], 3);
        assert_eq!(json("Here it is: {\"a\": 4} as asked").unwrap()["a"], 4);
        assert_eq!(json("} nothing {"), None);
        assert_eq!(json("[1, 2]"), None, "an object, not any JSON");
    }
}
