//! Static analysis of Python and JavaScript agent source with tree-sitter's grammars
//! (`tree-sitter-python`, `tree-sitter-javascript`): the same questions the `syn` analysis asks
//! of Rust, in those languages' terms.
//!
//! - `unhandled-exception`: a `raise`/`throw` of anything but the contract's errors, or a call
//!   that raises on bad input (`json.loads`, `int`, `JSON.parse`), outside a `try` that catches:
//!   the call traps instead of answering an error the caller can act on.
//! - `swallowed-exception`: an `except`/`catch` whose body does nothing.
//! - `ignored-result`: a call whose only effect is its value (`json.dumps(x)`, `s.strip()`,
//!   `kv.get(k)`, `llm.complete(r)`), its value thrown away.
//! - `long-function`, `branchy-function`: as for Rust.
//! - `build-time-state`: randomness, clocks and ids made at the top level, which runs once when
//!   the componentizer snapshots the module: every call sees the same value (JavaScript's
//!   randomness cannot run then at all, and fails the build).
//! - `host-read`: top-level code that would read the build machine (`open`, `os.environ`,
//!   `subprocess`, an absolute or parent-relative import): refused in an agent's own edit.
//!
//! The walk is iterative (an explicit stack, no recursion), so a file nested as deep as its size
//! allows cannot exhaust a thread's stack; tree-sitter's parser keeps its own stack on the heap.

use tree_sitter::{Node, Parser};

use crate::analysis::{Finding, MAX_BRANCHES, MAX_FUNCTION_LINES, Unparsed};
use crate::builder::Language;

/// What the walk needs of each language: its grammar and the node kinds it looks for.
impl Language {
    fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
        }
    }

    /// Node kinds that open a function: their bodies run when called, not at build time.
    fn functions(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["function_definition", "lambda"],
            Language::JavaScript => &[
                "function_declaration",
                "function_expression",
                "generator_function_declaration",
                "generator_function",
                "arrow_function",
                "method_definition",
            ],
        }
    }

    /// Node kinds that are a decision point (McCabe).
    fn branches(self) -> &'static [&'static str] {
        match self {
            Language::Python => &[
                "if_statement",
                "elif_clause",
                "for_statement",
                "while_statement",
                "except_clause",
                "conditional_expression",
                "boolean_operator",
                "case_clause",
                "for_in_clause",
                "if_clause",
            ],
            Language::JavaScript => &[
                "if_statement",
                "for_statement",
                "for_in_statement",
                "while_statement",
                "do_statement",
                "catch_clause",
                "ternary_expression",
                "switch_case",
            ],
        }
    }

    fn handler(self) -> &'static str {
        match self {
            Language::Python => "except_clause",
            Language::JavaScript => "catch_clause",
        }
    }

    fn call(self) -> &'static str {
        match self {
            Language::Python => "call",
            Language::JavaScript => "call_expression",
        }
    }

    fn throw(self) -> &'static str {
        match self {
            Language::Python => "raise_statement",
            Language::JavaScript => "throw_statement",
        }
    }
}

/// Calls that raise on malformed input, by the text of the called function.
const RAISES_PY: &[&str] = &["json.loads", "int", "float", "decimal.Decimal", "Decimal"];
const RAISES_JS: &[&str] = &["JSON.parse", "BigInt"];

/// Host calls made only for their value, alike in both languages' bindings.
const PURE_HOST: &[&str] = &[
    "kv.get",
    "kv.keys",
    "runtime.config",
    "llm.complete",
    "http.fetch",
    "market.bars",
    "market.latest",
    "memory.recall",
];

/// Calls made only for their value, by the called function's text (`name`) or by the method's
/// name (`.name`); and [`PURE_HOST`].
const PURE_PY: &[&str] = &[
    "json.dumps",
    "sorted",
    "reversed",
    "len",
    "str",
    "repr",
    "int",
    "float",
    "round",
    "abs",
    "min",
    "max",
    "sum",
    ".strip",
    ".lstrip",
    ".rstrip",
    ".lower",
    ".upper",
    ".replace",
    ".split",
    ".join",
    ".format",
    ".copy",
    ".encode",
    ".decode",
    ".startswith",
    ".endswith",
];
const PURE_JS: &[&str] = &[
    "JSON.stringify",
    "Number",
    "String",
    "parseInt",
    "parseFloat",
    "Math.max",
    "Math.min",
    "Math.round",
    "Math.abs",
    ".trim",
    ".toLowerCase",
    ".toUpperCase",
    ".replace",
    ".replaceAll",
    ".slice",
    ".concat",
    ".map",
    ".filter",
    ".split",
    ".join",
    ".toString",
    ".toFixed",
    ".startsWith",
    ".endsWith",
    ".includes",
];

/// Randomness, clocks and ids, by the called function's text (`name`, or `name.*` for a
/// module), with the helper to use instead.
const STATE_PY: &[(&str, &str)] = &[
    ("random.*", "overseer.random() or overseer.rng()"),
    ("Random", "overseer.rng()"),
    ("numpy.random.*", "overseer.rng()"),
    ("np.random.*", "overseer.rng()"),
    ("secrets.*", "overseer.new_id() or os.urandom inside handle"),
    ("os.urandom", "os.urandom inside handle"),
    ("uuid.uuid1", "overseer.new_id()"),
    ("uuid.uuid4", "overseer.new_id()"),
    ("uuid4", "overseer.new_id()"),
    ("uuid1", "overseer.new_id()"),
    ("time.time", "overseer.now_ms()"),
    ("time.time_ns", "overseer.now_ms()"),
    ("time.monotonic", "overseer.now_ms()"),
    ("time.perf_counter", "overseer.now_ms()"),
    ("datetime.now", "overseer.now_ms()"),
    ("datetime.utcnow", "overseer.now_ms()"),
    ("datetime.today", "overseer.now_ms()"),
    ("datetime.datetime.now", "overseer.now_ms()"),
    ("datetime.datetime.utcnow", "overseer.now_ms()"),
    ("date.today", "overseer.now_ms()"),
    ("datetime.date.today", "overseer.now_ms()"),
];
const STATE_JS: &[(&str, &str)] = &[
    ("Math.random", "overseer.random()"),
    ("Date.now", "overseer.nowMs()"),
    ("Date", "overseer.nowMs()"),
    ("crypto.randomUUID", "overseer.newId()"),
    (
        "crypto.getRandomValues",
        "crypto.getRandomValues inside handle",
    ),
    ("performance.now", "overseer.nowMs()"),
];

/// JavaScript's randomness cannot run while the component is built at all: the engine's
/// snapshot has no random source, and the build fails with a trap.
const BUILD_FAILS_JS: &[&str] = &["Math.random", "crypto.randomUUID", "crypto.getRandomValues"];

/// Top-level calls that read the machine the build runs on.
const HOST_PY: &[&str] = &[
    "open",
    "io.open",
    "os.*",
    "subprocess.*",
    "socket.*",
    "shutil.*",
    "pathlib.*",
    "Path",
    "glob.*",
    "exec",
    "eval",
    "compile",
    "__import__",
    "importlib.*",
];

/// Longest text of a called function the walk compares with its patterns.
const MAX_CALLEE_BYTES: usize = 128;

/// Whether `callee` (a call's function, as written) is `pattern`: equal, a module's member
/// (`name.*`) or a method of that name (`.name`).
fn matches(callee: &str, pattern: &str) -> bool {
    if let Some(module) = pattern.strip_suffix(".*") {
        return callee
            .strip_prefix(module)
            .is_some_and(|rest| rest.starts_with('.'));
    }
    if pattern.starts_with('.') {
        return callee.ends_with(pattern) && callee.len() > pattern.len();
    }
    callee == pattern
}

/// What the walk knows where it stands.
#[derive(Clone, Copy)]
struct Scope {
    /// The enclosing function, an index into the walk's functions; `None` at the top level.
    function: Option<usize>,
    /// Inside the body of a `try` that has a handler.
    guarded: bool,
    /// Inside an `except`/`catch` clause.
    handling: bool,
}

struct Function {
    name: String,
    line: u32,
    lines: usize,
    branches: usize,
}

/// The findings of one file, and why it was not analysed when it was not.
pub(crate) fn analyze_file(
    script: Language,
    path: &str,
    text: &str,
    findings: &mut Vec<Finding>,
    unparsed: &mut Vec<Unparsed>,
) {
    let mut parser = Parser::new();
    if let Err(e) = parser.set_language(&script.grammar()) {
        unparsed.push(Unparsed {
            file: path.to_string(),
            line: 1,
            error: format!("the grammar does not load: {e}"),
        });
        return;
    }
    let Some(tree) = parser.parse(text, None) else {
        unparsed.push(Unparsed {
            file: path.to_string(),
            line: 1,
            error: "the parser gave up".to_string(),
        });
        return;
    };
    let root = tree.root_node();
    if root.has_error() {
        let line = first_error(root).map_or(1, |n| n.start_position().row as u32 + 1);
        unparsed.push(Unparsed {
            file: path.to_string(),
            line,
            error: "a syntax error".to_string(),
        });
        return;
    }
    Walk {
        script,
        path,
        source: text.as_bytes(),
        findings,
        functions: Vec::new(),
    }
    .run(root);
}

/// The first error or missing node, in document order.
fn first_error(root: Node<'_>) -> Option<Node<'_>> {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            return Some(node);
        }
        if node.has_error() {
            let mut cursor = node.walk();
            let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
            stack.extend(children.into_iter().rev());
        }
    }
    None
}

struct Walk<'a> {
    script: Language,
    path: &'a str,
    source: &'a [u8],
    findings: &'a mut Vec<Finding>,
    functions: Vec<Function>,
}

impl Walk<'_> {
    /// The node's text with its whitespace collapsed, when it is at most `max` bytes long:
    /// patterns are short, and building the text of every node of a long chain would make the
    /// walk quadratic.
    fn short_text(&self, node: Node<'_>, max: usize) -> Option<String> {
        (node.end_byte().saturating_sub(node.start_byte()) <= max).then(|| self.quoted(node, max))
    }

    /// The first `max` bytes of the node's text (on a character boundary), whitespace
    /// collapsed: what a finding quotes.
    fn quoted(&self, node: Node<'_>, max: usize) -> String {
        let start = node.start_byte();
        let mut end = node.end_byte().min(start + max);
        let text = loop {
            match std::str::from_utf8(&self.source[start..end]) {
                Ok(text) => break text,
                Err(e) if e.valid_up_to() > 0 => end = start + e.valid_up_to(),
                Err(_) => break "",
            }
        };
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn report(&mut self, node: Node<'_>, scope: Scope, kind: &'static str, message: String) {
        let position = node.start_position();
        self.findings.push(Finding {
            file: self.path.to_string(),
            line: position.row as u32 + 1,
            column: position.column as u32 + 1,
            kind,
            function: scope.function.map(|f| self.functions[f].name.clone()),
            message,
        });
    }

    fn run(mut self, root: Node<'_>) {
        let mut stack = vec![(
            root,
            Scope {
                function: None,
                guarded: false,
                handling: false,
            },
            None,
        )];
        while let Some((node, scope, parent)) = stack.pop() {
            let scope = self.visit(node, scope, parent);
            let mut cursor = node.walk();
            let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
            let guarded_body = (node.kind() == "try_statement")
                .then(|| {
                    let handled = children.iter().any(|c| c.kind() == self.script.handler());
                    handled.then(|| node.child_by_field_name("body")).flatten()
                })
                .flatten();
            for child in children.into_iter().rev() {
                let mut inner = scope;
                if Some(child) == guarded_body {
                    inner.guarded = true;
                }
                if child.kind() == self.script.handler() {
                    inner.handling = true;
                }
                stack.push((child, inner, Some(node)));
            }
        }
        for function in std::mem::take(&mut self.functions) {
            let at = |kind, message| Finding {
                file: self.path.to_string(),
                line: function.line,
                column: 1,
                kind,
                function: Some(function.name.clone()),
                message,
            };
            if function.lines > MAX_FUNCTION_LINES {
                self.findings.push(at(
                    "long-function",
                    format!(
                        "{} lines, more than {MAX_FUNCTION_LINES}: split it",
                        function.lines
                    ),
                ));
            }
            if function.branches > MAX_BRANCHES {
                self.findings.push(at(
                    "branchy-function",
                    format!(
                        "{} decision points, more than {MAX_BRANCHES}: split it",
                        function.branches
                    ),
                ));
            }
        }
        self.findings
            .sort_by(|a, b| (a.line, a.column, a.kind).cmp(&(b.line, b.column, b.kind)));
    }

    /// Look at one node (a child of `parent`); answer the scope its children are in.
    fn visit(&mut self, node: Node<'_>, scope: Scope, parent: Option<Node<'_>>) -> Scope {
        let kind = node.kind();
        if self.script.functions().contains(&kind) {
            let name = self.function_name(node, parent);
            self.functions.push(Function {
                name,
                line: node.start_position().row as u32 + 1,
                lines: node.end_position().row - node.start_position().row + 1,
                branches: 0,
            });
            return Scope {
                function: Some(self.functions.len() - 1),
                guarded: false,
                handling: false,
            };
        }
        if let Some(f) = scope.function
            && (self.script.branches().contains(&kind) || self.logical(node))
        {
            self.functions[f].branches += 1;
        }
        if kind == self.script.call() {
            self.call(node, scope);
        } else if kind == self.script.throw() {
            self.throw(node, scope);
        } else if kind == self.script.handler() {
            self.handler(node, scope);
        } else if kind == "expression_statement" {
            self.statement(node, scope);
        } else if kind == "new_expression" && scope.function.is_none() {
            let constructor = node
                .child_by_field_name("constructor")
                .and_then(|c| self.short_text(c, MAX_CALLEE_BYTES))
                .unwrap_or_default();
            self.build_time_state(node, scope, &format!("new {constructor}()"), &constructor);
        } else if (kind == "import_statement" || kind == "export_statement")
            && self.script == Language::JavaScript
        {
            self.import(node, scope);
        } else if kind == "attribute"
            && scope.function.is_none()
            && self.script == Language::Python
            && self.short_text(node, 32).as_deref() == Some("os.environ")
        {
            self.report(
                node,
                scope,
                "host-read",
                "os.environ at the top level reads the build machine's environment when the component is built".to_string(),
            );
        }
        scope
    }

    /// JavaScript's `&&`, `||` and `??`: decision points like Python's `and`/`or`.
    fn logical(&self, node: Node<'_>) -> bool {
        self.script == Language::JavaScript
            && node.kind() == "binary_expression"
            && node
                .child_by_field_name("operator")
                .is_some_and(|op| matches!(op.kind(), "&&" | "||" | "??"))
    }

    fn function_name(&self, node: Node<'_>, parent: Option<Node<'_>>) -> String {
        if let Some(name) = node.child_by_field_name("name") {
            return self.quoted(name, MAX_CALLEE_BYTES);
        }
        // `const handle = (event) => …`: the declarator's name.
        parent
            .filter(|p| p.kind() == "variable_declarator" || p.kind() == "assignment")
            .and_then(|p| {
                p.child_by_field_name("name")
                    .or_else(|| p.child_by_field_name("left"))
            })
            .map(|n| self.quoted(n, MAX_CALLEE_BYTES))
            .unwrap_or_else(|| "<anonymous>".to_string())
    }

    /// The called function as written, when it is short enough to be one of the patterns.
    fn callee(&self, call: Node<'_>) -> String {
        call.child_by_field_name("function")
            .and_then(|f| self.short_text(f, MAX_CALLEE_BYTES))
            .unwrap_or_default()
    }

    fn call(&mut self, node: Node<'_>, scope: Scope) {
        let callee = self.callee(node);
        if scope.function.is_none() {
            self.build_time_state(node, scope, &format!("{callee}()"), &callee);
            if self.script == Language::Python && HOST_PY.iter().any(|p| matches(&callee, p)) {
                self.report(
                    node,
                    scope,
                    "host-read",
                    format!(
                        "{callee}() at the top level runs on the build machine when the component is built"
                    ),
                );
            }
            return;
        }
        let raises = match self.script {
            Language::Python => RAISES_PY,
            Language::JavaScript => RAISES_JS,
        };
        if !scope.guarded
            && !scope.handling
            && raises.iter().any(|p| matches(&callee, p))
            && !self.literal_argument(node)
        {
            let (catch, error) = match self.script {
                Language::Python => ("catch ValueError", "raise overseer.invalid_input(...)"),
                Language::JavaScript => {
                    ("catch the SyntaxError", "throw overseer.invalidInput(...)")
                }
            };
            self.report(
                node,
                scope,
                "unhandled-exception",
                format!(
                    "{callee}() fails on malformed input outside a try: the call traps instead of answering; {catch} and {error}"
                ),
            );
        }
    }

    /// Whether every argument of `call` is a literal (`int("3")` cannot fail at run time).
    fn literal_argument(&self, call: Node<'_>) -> bool {
        let Some(arguments) = call.child_by_field_name("arguments") else {
            return false;
        };
        let mut cursor = arguments.walk();
        let named: Vec<Node<'_>> = arguments.named_children(&mut cursor).collect();
        !named.is_empty()
            && named
                .iter()
                .all(|a| matches!(a.kind(), "string" | "integer" | "float" | "number"))
    }

    fn build_time_state(&mut self, node: Node<'_>, scope: Scope, shown: &str, callee: &str) {
        let table = match self.script {
            Language::Python => STATE_PY,
            Language::JavaScript => STATE_JS,
        };
        let Some((_, instead)) = table.iter().find(|(p, _)| matches(callee, p)) else {
            return;
        };
        let fails = self.script == Language::JavaScript && BUILD_FAILS_JS.contains(&callee);
        let what = if fails {
            "cannot run while the component is built: the build fails"
        } else {
            "runs once, when the component is built: every call sees the same value"
        };
        self.report(
            node,
            scope,
            "build-time-state",
            format!("{shown} at the top level {what}; make it inside handle with {instead}"),
        );
    }

    fn throw(&mut self, node: Node<'_>, scope: Scope) {
        if scope.function.is_none() || scope.guarded || scope.handling {
            return;
        }
        let mut cursor = node.walk();
        let Some(thrown) = node.named_children(&mut cursor).next() else {
            // A bare `raise` re-raises what is being handled.
            return;
        };
        let text = self.quoted(thrown, 200);
        let contract = match self.script {
            Language::Python => {
                text.starts_with("overseer.")
                    || text.starts_with("Err(")
                    || thrown.kind() == "identifier"
            }
            Language::JavaScript => {
                text.starts_with("overseer.")
                    || (thrown.kind() == "object" && text.contains("tag:"))
                    || thrown.kind() == "identifier"
            }
        };
        if !contract {
            let (word, error) = match self.script {
                Language::Python => (
                    "raises",
                    "raise overseer.failed(...) (or invalid_input, denied, unavailable)",
                ),
                Language::JavaScript => (
                    "throws",
                    "throw overseer.failed(...) (or invalidInput, denied, unavailable)",
                ),
            };
            let shown: String = text.chars().take(60).collect();
            // `quoted` keeps 200 bytes: enough for the 60 characters shown and the markers.
            self.report(
                node,
                scope,
                "unhandled-exception",
                format!(
                    "{word} {shown} outside a try: the call traps instead of answering an error the caller can act on; {error}"
                ),
            );
        }
    }

    fn handler(&mut self, node: Node<'_>, scope: Scope) {
        let body = match self.script {
            Language::Python => {
                let mut cursor = node.walk();
                node.named_children(&mut cursor)
                    .find(|c| c.kind() == "block")
            }
            Language::JavaScript => node.child_by_field_name("body"),
        };
        let Some(body) = body else {
            return;
        };
        let mut cursor = body.walk();
        let empty = body.named_children(&mut cursor).all(|statement| {
            matches!(
                statement.kind(),
                "pass_statement" | "continue_statement" | "comment" | "empty_statement"
            ) || (statement.kind() == "expression_statement"
                && self.short_text(statement, 8).as_deref() == Some("..."))
        });
        if empty {
            let what = match self.script {
                Language::Python => "except",
                Language::JavaScript => "catch",
            };
            self.report(
                node,
                scope,
                "swallowed-exception",
                format!("this {what} does nothing with the error: log it, answer it, or let it reach the caller"),
            );
        }
    }

    fn statement(&mut self, node: Node<'_>, scope: Scope) {
        if scope.function.is_none() {
            return;
        }
        let mut cursor = node.walk();
        let Some(expression) = node.named_children(&mut cursor).next() else {
            return;
        };
        if expression.kind() != self.script.call() {
            return;
        }
        let callee = self.callee(expression);
        let pure = match self.script {
            Language::Python => PURE_PY,
            Language::JavaScript => PURE_JS,
        };
        if pure.iter().chain(PURE_HOST).any(|p| matches(&callee, p)) {
            self.report(
                expression,
                scope,
                "ignored-result",
                format!("the value of {callee}() is thrown away: the call has no other effect"),
            );
        }
    }

    fn import(&mut self, node: Node<'_>, scope: Scope) {
        let Some(source) = node.child_by_field_name("source") else {
            return;
        };
        let specifier = self.quoted(source, 512);
        let specifier = specifier.trim_matches(|c| c == '\'' || c == '"');
        let local = specifier.starts_with("./") && !specifier.contains("..");
        let host = specifier.starts_with("overseer:") || specifier.starts_with("wasi:");
        if !local && !host {
            self.report(
                node,
                scope,
                "host-read",
                format!(
                    "import {specifier:?}: an agent imports the contract (overseer:agent/…) and its own modules (./…) only"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(script: Language, text: &str) -> Vec<(u32, &'static str, String)> {
        let (mut findings, mut unparsed) = (Vec::new(), Vec::new());
        let path = match script {
            Language::Python => "app.py",
            Language::JavaScript => "app.js",
        };
        analyze_file(script, path, text, &mut findings, &mut unparsed);
        assert!(unparsed.is_empty(), "{unparsed:?}");
        findings
            .into_iter()
            .map(|f| (f.line, f.kind, f.message))
            .collect()
    }

    fn kinds(found: &[(u32, &'static str, String)]) -> Vec<(u32, &'static str)> {
        found.iter().map(|(line, kind, _)| (*line, *kind)).collect()
    }

    const PY: &str = r#"import json
import random
import uuid
import overseer

SEED = random.random()
ID = uuid.uuid4()
rng = random.Random()

class WitWorld:
    def handle(self, event):
        who = json.loads(event.payload)
        try:
            n = int(who)
        except ValueError:
            pass
        if who == "x":
            raise ValueError("no")
        if who == "y":
            raise overseer.invalid_input("no")
        json.dumps(who)
        who.strip()
        value = random.random()
        return json.dumps({"who": who, "id": overseer.new_id()})
"#;

    #[test]
    fn python_findings_and_build_time_state() {
        let found = found(Language::Python, PY);
        assert_eq!(
            kinds(&found),
            [
                (6, "build-time-state"),
                (7, "build-time-state"),
                (8, "build-time-state"),
                (12, "unhandled-exception"),
                (15, "swallowed-exception"),
                (18, "unhandled-exception"),
                (21, "ignored-result"),
                (22, "ignored-result"),
            ],
            "{found:#?}"
        );
        assert!(found[0].2.contains("overseer.random()"), "{}", found[0].2);
        assert!(found[1].2.contains("overseer.new_id()"), "{}", found[1].2);
    }

    const JS: &str = r#"import * as kv from 'overseer:agent/kv@0.1.0';
import * as overseer from './overseer.js';

const started = Date.now();
const id = crypto.randomUUID();
const when = new Date();

export function handle(event) {
  const who = JSON.parse(event.payload);
  try {
    JSON.parse(who);
  } catch (e) {}
  if (who === 'x') {
    throw new Error('no');
  }
  if (who === 'y') {
    throw overseer.invalidInput('no');
  }
  if (who === 'z') {
    throw { tag: 'failed', val: 'no' };
  }
  JSON.stringify(who);
  who.trim();
  const fine = Math.random();
  return JSON.stringify({ who, at: Date.now() });
}
"#;

    #[test]
    fn javascript_findings_and_build_time_state() {
        let found = found(Language::JavaScript, JS);
        assert_eq!(
            kinds(&found),
            [
                (4, "build-time-state"),
                (5, "build-time-state"),
                (6, "build-time-state"),
                (9, "unhandled-exception"),
                (12, "swallowed-exception"),
                (14, "unhandled-exception"),
                (22, "ignored-result"),
                (23, "ignored-result"),
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn top_level_host_reads_are_found() {
        let py = "import os\nKEY = open('/etc/passwd').read()\nHOME = os.environ['HOME']\nX = os.getenv('X')\n";
        let found = found(Language::Python, py);
        let reads: Vec<u32> = found
            .iter()
            .filter(|f| f.1 == "host-read")
            .map(|f| f.0)
            .collect();
        assert_eq!(reads, [2, 3, 4], "{found:#?}");
        let js = "import x from '/etc/passwd';\nimport y from '../secret.js';\nimport z from './ok.js';\nexport * from '../more.js';\nexport { a } from './a.js';\n";
        let found = found_js(js);
        assert_eq!(found, [1, 2, 4]);
    }

    fn found_js(text: &str) -> Vec<u32> {
        found(Language::JavaScript, text)
            .into_iter()
            .filter(|f| f.1 == "host-read")
            .map(|f| f.0)
            .collect()
    }

    #[test]
    fn long_and_branchy_functions() {
        let mut py = String::from("def f(x):\n");
        for n in 0..12 {
            py.push_str(&format!("    if x == {n}:\n        return {n}\n"));
        }
        for _ in 0..40 {
            py.push_str("    x += 1\n");
        }
        let found = found(Language::Python, &py);
        assert_eq!(
            kinds(&found),
            [(1, "branchy-function"), (1, "long-function")],
            "{found:#?}"
        );
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        for script in [Language::Python, Language::JavaScript] {
            let depth = 100_000;
            let text = format!("x = {}1{}\n", "(".repeat(depth), ")".repeat(depth));
            let (mut findings, mut unparsed) = (Vec::new(), Vec::new());
            analyze_file(script, "deep", &text, &mut findings, &mut unparsed);
            let text = format!("x = {}1\n", "-".repeat(depth));
            analyze_file(script, "deep", &text, &mut findings, &mut unparsed);
        }
    }

    #[test]
    fn long_chains_are_walked_in_linear_time() {
        // Every call of the chain has the whole chain before it as its callee: quoting each
        // in full would take the square of the file's length.
        for script in [Language::Python, Language::JavaScript] {
            let text = format!("x = a{}\n", ".b()".repeat(200_000));
            let (mut findings, mut unparsed) = (Vec::new(), Vec::new());
            analyze_file(script, "chain", &text, &mut findings, &mut unparsed);
            assert!(unparsed.is_empty());
        }
    }

    #[test]
    fn a_syntax_error_is_unparsed_with_its_line() {
        let (mut findings, mut unparsed) = (Vec::new(), Vec::new());
        analyze_file(
            Language::Python,
            "app.py",
            "def f(:\n    pass\n",
            &mut findings,
            &mut unparsed,
        );
        assert_eq!(unparsed.len(), 1);
        assert_eq!(unparsed[0].line, 1);
    }
}
