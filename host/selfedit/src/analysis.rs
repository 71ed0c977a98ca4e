//! Static analysis of agent source: Rust with `syn` (the places a panic or a dropped error can
//! hide: `unwrap`, `expect`, `panic!` and kin, indexing, ignored `Result`s), Python and
//! JavaScript with tree-sitter ([`crate::script`]: unhandled and swallowed exceptions, thrown
//! away results, state made at build time), and in every language functions too long or too
//! branchy to review. The code editor puts the findings in its prompt; people read them at
//! `GET /v1/agents/{name}/analysis`.

use proc_macro2::Span;
use serde::Serialize;
use syn::visit::{self, Visit};

use crate::builder::Language;
use crate::snapshot::Snapshot;

/// What runs once, when a Python or JavaScript component is built, and is then the same on
/// every call (or, for JavaScript's randomness, fails the build): randomness, clocks and ids
/// made at the top level. `overseer build` and the host's builds warn of each.
pub fn build_time_state(snapshot: &Snapshot) -> Vec<Finding> {
    deep(|| script_findings(snapshot, "build-time-state").0)
}

/// The findings of `kind` in a snapshot's Python and JavaScript files, and the files that do
/// not parse.
fn script_findings(snapshot: &Snapshot, kind: &str) -> (Vec<Finding>, Vec<Unparsed>) {
    let (mut found, mut unparsed) = (Vec::new(), Vec::new());
    for (path, text) in &snapshot.files {
        if let Some(language) = Language::of_file(path) {
            let mut findings = Vec::new();
            crate::script::analyze_file(language, path, text, &mut findings, &mut unparsed);
            found.extend(findings.into_iter().filter(|f| f.kind == kind));
        }
    }
    (found, unparsed)
}

/// `findings` as warning lines, `warning: FILE:LINE:COLUMN: MESSAGE`, one per line.
pub fn warning_lines(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "warning: {}:{}:{}: {}\n",
                f.file, f.line, f.column, f.message
            )
        })
        .collect()
}

/// A function longer than this many lines is hard to review in one screen.
pub const MAX_FUNCTION_LINES: usize = 60;

/// McCabe's threshold: a function with more decision points than this is hard to test.
pub const MAX_BRANCHES: usize = 10;

/// Deepest bracket nesting analysed. syn parses recursively; a file nested deeper (no person
/// writes one) is reported as unparsed instead of exhausting the thread's stack.
pub const MAX_NESTING: usize = 128;

/// One place the analysis points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based.
    pub column: u32,
    /// Rust: `unwrap`, `expect`, `panic`, `index`, `ignored-result`; Python and JavaScript:
    /// `unhandled-exception`, `swallowed-exception`, `ignored-result`, `build-time-state`,
    /// `host-read`; all: `long-function`, `branchy-function`.
    pub kind: &'static str,
    /// The function it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub message: String,
}

/// A file the analysis could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Unparsed {
    pub file: String,
    pub line: u32,
    pub error: String,
}

/// Everything the analysis found in a source tree.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Analysis {
    /// Rust, Python and JavaScript files analysed.
    pub files: usize,
    pub findings: Vec<Finding>,
    /// Files that do not parse, or are too deep or long to walk.
    pub unparsed: Vec<Unparsed>,
}

/// Analyse every `.rs`, `.py`, `.js` and `.mjs` file of a snapshot. Rust test code
/// (`#[cfg(test)]`, `#[test]`) is skipped: an `unwrap` there is a test failing loudly, not a
/// bug.
pub fn analyze(snapshot: &Snapshot) -> Analysis {
    deep(|| analyze_here(snapshot))
}

/// The stack a walk over untrusted source runs on: with [`MAX_DEPTH`] it holds the deepest
/// recursion syn's parser, our visitors and the syntax tree's drop reach, debug builds'
/// large frames included. Reserved, not touched: memory is spent only as deep as a walk goes.
const DEEP_STACK: usize = 256 << 20;

/// Run `f` on a thread of its own with [`DEEP_STACK`] of stack.
fn deep<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let walk = std::thread::Builder::new()
            .name("analysis".to_string())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, f);
        match walk.map(|w| w.join()) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("no thread for the analysis: {e}"),
        }
    })
}

fn analyze_here(snapshot: &Snapshot) -> Analysis {
    let mut analysis = Analysis::default();
    for (path, text) in &snapshot.files {
        if let Some(language) = Language::of_file(path) {
            analysis.files += 1;
            crate::script::analyze_file(
                language,
                path,
                text,
                &mut analysis.findings,
                &mut analysis.unparsed,
            );
            continue;
        }
        if !path.ends_with(".rs") {
            continue;
        }
        analysis.files += 1;
        if nesting(text) > MAX_NESTING {
            analysis.unparsed.push(Unparsed {
                file: path.clone(),
                line: 1,
                error: format!("brackets nest deeper than {MAX_NESTING}"),
            });
            continue;
        }
        if let Some(line) = too_long_expression(text) {
            analysis.unparsed.push(Unparsed {
                file: path.clone(),
                line,
                error: format!(
                    "an expression of more than {MAX_OPERATORS} operators (unary, binary, method calls, generics) in one statement"
                ),
            });
            continue;
        }
        match syn::parse_file(text) {
            Ok(file) => {
                let mut visitor = Visitor {
                    file: path,
                    function: None,
                    findings: &mut analysis.findings,
                };
                visitor.visit_file(&file);
            }
            Err(e) => analysis.unparsed.push(Unparsed {
                file: path.clone(),
                line: e.span().start().line as u32,
                error: e.to_string(),
            }),
        }
    }
    // Line numbers come from a per-thread map of every text parsed; forget them, or a
    // long-lived thread keeps every source it ever analysed.
    proc_macro2::extra::invalidate_current_thread_spans();
    analysis
        .findings
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    analysis
}

/// Most operators one statement may hold. Unary operators, binary chains, method chains and
/// generic brackets each nest the syntax tree one level per operator, which syn builds, our
/// visitors walk and drop frees recursively; brackets alone do not bound them.
pub const MAX_OPERATORS: usize = 2_000;

/// The line of the first statement of `text` with more than [`MAX_OPERATORS`] operator
/// characters, counted without parsing between `;`, `{` and `}` (strings and comments
/// included, which only overestimates).
fn too_long_expression(text: &str) -> Option<u32> {
    let mut operators = 0usize;
    let mut line = 1u32;
    for c in text.chars() {
        match c {
            '\n' => line += 1,
            ';' | '{' | '}' => operators = 0,
            '!' | '-' | '*' | '&' | '+' | '/' | '%' | '^' | '|' | '<' | '>' | '=' | '.' | '?' => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Some(line);
                }
            }
            _ => {}
        }
    }
    None
}

/// How deep brackets nest in `text`, counted without parsing (strings and comments included,
/// which only overestimates).
fn nesting(text: &str) -> usize {
    let mut depth: usize = 0;
    let mut deepest = 0;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Where source would read the host when it is built. Rust: the `include!`,
/// `include_str!` and `include_bytes!` macros (named anywhere, so a macro cannot assemble
/// them), `#[path = ...]` on a module, and string literals that look like paths out of the
/// source (absolute, or through `..`) handed to any macro. Python and JavaScript: top-level
/// code (which the componentizer runs at build time) that opens files, reads the environment
/// or runs programs, and imports of anything but the contract and the agent's own modules. An
/// agent's edit may hold none.
pub fn host_reads(snapshot: &Snapshot) -> Vec<Finding> {
    deep(|| host_reads_here(snapshot))
}

fn host_reads_here(snapshot: &Snapshot) -> Vec<Finding> {
    let (mut found, unparsed) = script_findings(snapshot, "host-read");
    // A script that does not parse cannot be checked: refused like a read.
    found.extend(unparsed.into_iter().map(|u| Finding {
        file: u.file,
        line: u.line,
        column: 1,
        kind: "host-read",
        function: None,
        message: format!("the source cannot be checked: {}", u.error),
    }));
    for (path, text) in &snapshot.files {
        if !path.ends_with(".rs") {
            continue;
        }
        // Too deep to walk is too deep to trust: refused like a read.
        if nesting(text) > MAX_NESTING {
            found.push(Finding {
                file: path.clone(),
                line: 1,
                column: 1,
                kind: "host-read",
                function: None,
                message: format!(
                    "brackets nest deeper than {MAX_NESTING}: the source cannot be checked"
                ),
            });
            continue;
        }
        // Text that does not lex does not compile either; the build says why.
        if let Ok(tokens) = text.parse::<proc_macro2::TokenStream>() {
            scan(path, tokens, false, &mut found);
        }
    }
    proc_macro2::extra::invalidate_current_thread_spans();
    found
}

fn scan(file: &str, tokens: proc_macro2::TokenStream, in_macro: bool, found: &mut Vec<Finding>) {
    use proc_macro2::{Delimiter, TokenTree};

    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let report = |found: &mut Vec<Finding>, span: Span, message: String| {
        let start = span.start();
        found.push(Finding {
            file: file.to_string(),
            line: start.line as u32,
            column: start.column as u32 + 1,
            kind: "host-read",
            function: None,
            message,
        });
    };
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                let name = name.trim_start_matches("r#");
                let called =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                if ["include", "include_str", "include_bytes"].contains(&name) {
                    report(
                        found,
                        ident.span(),
                        format!("`{name}!` reads a file of the host at build time"),
                    );
                } else if called
                    && ["env", "option_env"].contains(&name)
                    && !reads_package_metadata(tokens.get(i + 2))
                {
                    report(
                        found,
                        ident.span(),
                        format!("`{name}!` reads the build's environment"),
                    );
                }
            }
            TokenTree::Punct(p) if p.as_char() == '#' => {
                let attribute = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some(TokenTree::Group(g)), _) => Some(g),
                    (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g)))
                        if bang.as_char() == '!' =>
                    {
                        Some(g)
                    }
                    _ => None,
                };
                // `#[path = …]`, and the same inside `#[cfg_attr(…, path = …)]`.
                if let Some(group) = attribute
                    && group.delimiter() == Delimiter::Bracket
                    && names_path(group.stream())
                {
                    report(
                        found,
                        group.span(),
                        "`#[path]` reads a module from anywhere on the host".to_string(),
                    );
                }
            }
            TokenTree::Literal(literal) if in_macro => {
                let text = literal.to_string();
                let value = text
                    .trim_start_matches(['r', '#', 'b'])
                    .trim_matches(['"', '#']);
                if value.starts_with('/') || value.contains("..") {
                    report(
                        found,
                        literal.span(),
                        format!("{text} given to a macro looks like a path out of the source"),
                    );
                }
            }
            TokenTree::Group(group) => {
                let called =
                    i >= 1 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '!');
                scan(file, group.stream(), in_macro || called, found);
            }
            _ => {}
        }
    }
}

/// Whether the arguments of an `env!` name one of the variables cargo sets for the crate being
/// compiled (`CARGO_PKG_*`, `CARGO_CRATE_NAME`): the package's own metadata, nothing of the
/// host.
fn reads_package_metadata(arguments: Option<&proc_macro2::TokenTree>) -> bool {
    let Some(proc_macro2::TokenTree::Group(group)) = arguments else {
        return false;
    };
    let first = group.stream().into_iter().next();
    let Some(proc_macro2::TokenTree::Literal(literal)) = first else {
        return false;
    };
    let text = literal.to_string();
    let name = text.trim_matches('"');
    text.starts_with('"')
        && (name.starts_with("CARGO_PKG_") || name == "CARGO_CRATE_NAME")
        && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// Whether an attribute's tokens set `path = …` anywhere, however deeply nested.
fn names_path(tokens: proc_macro2::TokenStream) -> bool {
    use proc_macro2::TokenTree;

    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    tokens.iter().enumerate().any(|(i, token)| match token {
        TokenTree::Ident(ident) if ident == "path" => {
            matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '=')
                || i == 0 && tokens.len() == 1
        }
        TokenTree::Group(group) => names_path(group.stream()),
        _ => false,
    })
}

struct Visitor<'a> {
    file: &'a str,
    function: Option<String>,
    findings: &'a mut Vec<Finding>,
}

impl Visitor<'_> {
    fn report(&mut self, span: Span, kind: &'static str, message: String) {
        let start = span.start();
        self.findings.push(Finding {
            file: self.file.to_string(),
            line: start.line as u32,
            column: start.column as u32 + 1,
            kind,
            function: self.function.clone(),
            message,
        });
    }

    /// Check a function's size and branches, then visit its body as the current function.
    fn function(&mut self, name: String, attrs: &[syn::Attribute], block: &syn::Block) {
        if is_test(attrs) {
            return;
        }
        let outer = self.function.replace(name.clone());
        let open = block.brace_token.span.open().start().line;
        let close = block.brace_token.span.close().end().line;
        let lines = close.saturating_sub(open) + 1;
        if lines > MAX_FUNCTION_LINES {
            self.report(
                block.brace_token.span.open(),
                "long-function",
                format!(
                    "`{name}` is {lines} lines long (more than {MAX_FUNCTION_LINES}): split it"
                ),
            );
        }
        let mut branches = Branches(0);
        branches.visit_block(block);
        if branches.0 > MAX_BRANCHES {
            self.report(
                block.brace_token.span.open(),
                "branchy-function",
                format!(
                    "`{name}` has {} decision points (more than {MAX_BRANCHES}): split it or simplify",
                    branches.0
                ),
            );
        }
        self.visit_block(block);
        self.function = outer;
    }
}

impl<'ast> Visit<'ast> for Visitor<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test(&item.attrs) {
            visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_test(&item.attrs) {
            visit::visit_item_impl(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.function(item.sig.ident.to_string(), &item.attrs, &item.block);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.function(item.sig.ident.to_string(), &item.attrs, &item.block);
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(block) = &item.default {
            self.function(item.sig.ident.to_string(), &item.attrs, block);
        }
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        match method.as_str() {
            "unwrap" if call.args.is_empty() => self.report(
                call.method.span(),
                "unwrap",
                "`unwrap()` traps on `None` or `Err`: handle the case or return the error with `?`"
                    .to_string(),
            ),
            "expect" if call.args.len() == 1 => self.report(
                call.method.span(),
                "expect",
                "`expect()` traps on `None` or `Err`: handle the case or return the error with `?`"
                    .to_string(),
            ),
            _ => {}
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if let Some(ident) = mac.path.segments.last().map(|s| &s.ident)
            && ["panic", "unreachable", "todo", "unimplemented"]
                .contains(&ident.to_string().as_str())
        {
            let name = ident.to_string();
            self.report(
                ident.span(),
                "panic",
                format!("`{name}!` traps the invocation: return an error the caller can act on"),
            );
        }
        // Macro bodies are tokens to syn; the common ones (`format!`, `println!`, `vec!`,
        // `assert!`, …) take expressions separated by commas, which are worth a look too.
        if let Ok(args) = mac.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        ) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }

    fn visit_expr_index(&mut self, index: &'ast syn::ExprIndex) {
        self.report(
            index.bracket_token.span.open(),
            "index",
            "indexing traps when out of bounds: use `.get()` and handle `None`".to_string(),
        );
        visit::visit_expr_index(self, index);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let syn::Pat::Wild(wild) = &local.pat
            && let Some(init) = &local.init
            && may_fail(&init.expr)
        {
            self.report(
                wild.underscore_token.span,
                "ignored-result",
                "`let _ =` drops what this call returns: an error here goes unnoticed".to_string(),
            );
        }
        visit::visit_local(self, local);
    }

    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        if let syn::Stmt::Expr(expr, Some(_)) = stmt {
            match expr {
                // `_ = call();`
                syn::Expr::Assign(assign)
                    if matches!(*assign.left, syn::Expr::Infer(_)) && may_fail(&assign.right) =>
                {
                    self.report(
                        assign.eq_token.span,
                        "ignored-result",
                        "`_ =` drops what this call returns: an error here goes unnoticed"
                            .to_string(),
                    );
                }
                // `call().ok();`
                syn::Expr::MethodCall(call) if call.method == "ok" && call.args.is_empty() => {
                    self.report(
                        call.method.span(),
                        "ignored-result",
                        "`.ok();` turns an error into nothing: handle it or return it".to_string(),
                    );
                }
                _ => {}
            }
        }
        visit::visit_stmt(self, stmt);
    }
}

/// Calls, `.await`s and `?`s can return a `Result`; a literal or a path cannot.
fn may_fail(expr: &syn::Expr) -> bool {
    matches!(
        expr,
        syn::Expr::Call(_) | syn::Expr::MethodCall(_) | syn::Expr::Await(_) | syn::Expr::Try(_)
    )
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("test") {
            return true;
        }
        if path.is_ident("cfg") {
            let mut test = false;
            let _ = attr.parse_nested_meta(|meta| {
                test |= meta.path.is_ident("test");
                Ok(())
            });
            return test;
        }
        false
    })
}

/// Counts decision points: each `if`, loop, match arm past the first, `&&`, `||` and `?`.
struct Branches(usize);

impl<'ast> Visit<'ast> for Branches {
    fn visit_expr(&mut self, expr: &'ast syn::Expr) {
        match expr {
            syn::Expr::If(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_) | syn::Expr::Loop(_) => {
                self.0 += 1
            }
            syn::Expr::Match(m) => self.0 += m.arms.len().saturating_sub(1),
            syn::Expr::Try(_) => self.0 += 1,
            syn::Expr::Binary(b) if matches!(b.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) => {
                self.0 += 1
            }
            // Closures and nested functions are judged on their own.
            syn::Expr::Closure(_) => return,
            _ => {}
        }
        visit::visit_expr(self, expr);
    }

    fn visit_item(&mut self, _item: &'ast syn::Item) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_that_does_not_parse_cannot_pass_as_checked() {
        let mut snapshot = Snapshot::default();
        snapshot
            .files
            .insert("app.py".to_string(), "def f(:\n    pass\n".to_string());
        let reads = host_reads(&snapshot);
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert!(reads[0].message.contains("cannot be checked"), "{reads:?}");
    }

    fn analyze_one(text: &str) -> Analysis {
        let mut snapshot = Snapshot::default();
        snapshot
            .files
            .insert("src/lib.rs".to_string(), text.to_string());
        snapshot
            .files
            .insert("agent.toml".to_string(), "name = \"x\"".to_string());
        analyze(&snapshot)
    }

    fn kinds(analysis: &Analysis) -> Vec<(&'static str, u32)> {
        analysis.findings.iter().map(|f| (f.kind, f.line)).collect()
    }

    #[test]
    fn finds_panics_and_dropped_errors_with_their_lines() {
        let analysis = analyze_one(
            r#"
fn handle(payload: &str) -> Result<String, Error> {
    let n: u32 = payload.parse().unwrap();
    let m: u32 = payload.parse().expect("a number");
    let _ = kv::set("n", "1");
    _ = kv::set("m", "1");
    kv::delete("x").ok();
    let _ = 5;
    if n == 0 { panic!("zero") }
    let list = vec![1];
    Ok(format!("{}", list[n as usize] + m))
}
"#,
        );
        assert_eq!(
            kinds(&analysis),
            vec![
                ("unwrap", 3),
                ("expect", 4),
                ("ignored-result", 5),
                ("ignored-result", 6),
                ("ignored-result", 7),
                ("panic", 9),
                ("index", 11),
            ]
        );
        assert!(
            analysis
                .findings
                .iter()
                .all(|f| f.function.as_deref() == Some("handle"))
        );
        assert_eq!(analysis.findings[0].column, 34);
        assert_eq!(analysis.files, 1);
    }

    #[test]
    fn test_code_is_not_judged() {
        let analysis = analyze_one(
            r#"
fn ok() -> u32 { 1 }
#[cfg(test)]
mod tests {
    #[test]
    fn t() { Some(1).unwrap(); }
}
#[test]
fn top() { panic!() }
"#,
        );
        assert!(analysis.findings.is_empty(), "{:?}", analysis.findings);
    }

    #[test]
    fn long_and_branchy_functions_are_named() {
        let long = format!(
            "fn long() {{\n{}}}\n",
            "    let x = 1;\n".repeat(MAX_FUNCTION_LINES)
        );
        let branchy = format!(
            "fn branchy(x: u32) -> u32 {{\n{}    0\n}}\n",
            "    if x > 1 && x < 9 { return 1; }\n".repeat(6)
        );
        let analysis = analyze_one(&(long + &branchy));
        let found = kinds(&analysis);
        assert!(found.contains(&("long-function", 1)), "{found:?}");
        assert!(
            found.contains(&("branchy-function", MAX_FUNCTION_LINES as u32 + 3)),
            "{found:?}"
        );
        let message = &analysis
            .findings
            .iter()
            .find(|f| f.kind == "branchy-function")
            .unwrap()
            .message;
        assert!(message.contains("12 decision points"), "{message}");
    }

    #[test]
    fn a_file_that_does_not_parse_is_reported() {
        let analysis = analyze_one("fn broken( {\n");
        assert!(analysis.findings.is_empty());
        assert_eq!(analysis.unparsed.len(), 1);
        assert_eq!(analysis.unparsed[0].file, "src/lib.rs");
    }

    #[test]
    fn reads_of_the_host_at_build_time_are_found() {
        let mut snapshot = Snapshot::default();
        snapshot.files.insert(
            "src/lib.rs".to_string(),
            r#"
const TOKEN: &str = include_str!("/root/.overseer/token");
macro_rules! grab { ($m:ident) => { $m!("x") } }
#[path = "../../secret.rs"]
mod secret;
fn f() -> String { format!("{}", my_macro!("../../etc/passwd")) }
fn ok() -> String { format!("{} of {}", "a/b", 1) }
#[cfg_attr(all(), path = "token.rs")]
mod hidden;
const KEY: Option<&str> = option_env!("OVERSEER_LLM_KEY");
const VERSION: &str = env!("CARGO_PKG_VERSION");
"#
            .to_string(),
        );
        let found: Vec<(u32, String)> = host_reads(&snapshot)
            .into_iter()
            .map(|f| (f.line, f.message))
            .collect();
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(
            found[0].0 == 2 && found[0].1.contains("include_str"),
            "{found:?}"
        );
        assert!(
            found[1].0 == 2 && found[1].1.contains("/root/"),
            "{found:?}"
        );
        assert!(
            found[2].0 == 4 && found[2].1.contains("#[path]"),
            "{found:?}"
        );
        assert!(
            found[3].0 == 6 && found[3].1.contains("etc/passwd"),
            "{found:?}"
        );
        assert!(
            found[4].0 == 8 && found[4].1.contains("#[path]"),
            "{found:?}"
        );
        assert!(
            found[5].0 == 10 && found[5].1.contains("environment"),
            "{found:?}"
        );
    }

    /// The shapes that overflowed the stack, and their cousins: each is reported, none crashes.
    #[test]
    fn deep_shapes_are_reported_instead_of_overflowing() {
        let shapes = [
            format!("fn f() -> bool {{ {}true }}\n", "!".repeat(2500)),
            format!("fn f() -> i64 {{ {}1 }}\n", "-".repeat(5000)),
            format!("fn f() -> u32 {{ 1{} }}\n", " + 1".repeat(20_000)),
            format!("fn f() {{ x{} }}\n", ".a()".repeat(20_000)),
            format!("type T = {}u8{};\n", "Vec<".repeat(3000), ">".repeat(3000)),
            format!("fn f() {{ let g = {}1; }}\n", "|| ".repeat(5000)),
            format!("fn f() {{ {}1{} }}\n", "(".repeat(5000), ")".repeat(5000)),
        ];
        for shape in &shapes {
            let analysis = analyze_one(shape);
            assert_eq!(analysis.unparsed.len(), 1, "{}", &shape[..40]);
            let reads = host_reads(&Snapshot {
                files: [("src/lib.rs".to_string(), shape.clone())].into(),
            });
            // Flat shapes are checked; too deep ones are refused.
            assert!(reads.iter().all(|r| r.kind == "host-read"));
        }
        // Up to the bound the walk runs on its own deep stack: 2,000 `!` parse and are walked.
        let at_bound = format!("fn f() -> bool {{ {}true }}\n", "!".repeat(2000));
        assert!(analyze_one(&at_bound).unparsed.is_empty());
        // Long but ordinary code is still analysed.
        let ordinary = format!("fn f() -> u32 {{ 1{} }}\n", " + 1".repeat(500));
        assert!(analyze_one(&ordinary).unparsed.is_empty());
    }

    #[test]
    fn deep_nesting_is_reported_instead_of_parsed() {
        let deep = format!(
            "fn f() -> u32 {{ {}1{} }}\n",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let analysis = analyze_one(&deep);
        assert_eq!(analysis.unparsed.len(), 1);
        assert!(analysis.unparsed[0].error.contains("nest"));
        let fine = format!(
            "fn f() -> u32 {{ {}1{} }}\n",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert!(analyze_one(&fine).unparsed.is_empty());
    }
}

/// Bounded property runs of the walks over untrusted source (the fuzz target `analysis`
/// runs them unbounded): token soup of any depth is analysed or reported unparsed, and a
/// file nested past the bound is always refused as an agent's edit.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "fn f() ",
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            "<",
            ">",
            "!",
            "-",
            "+ 1",
            ".a()",
            "|| ",
            "x",
            "1",
            ";",
            "let y = ",
            "unwrap()",
            "include_str!(\"/etc/hostname\")",
            "\"",
            "//",
            "\n",
            "#[path = \"/tmp\"]",
            "mod m;",
            "r#\"",
            "'a",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_token_soup_is_analysed_or_reported(
            tokens in prop::collection::vec(token(), 0..200),
            depth in 0usize..3000,
        ) {
            let text = format!("{}{}{}", "(".repeat(depth), tokens.concat(), ")".repeat(depth));
            let snapshot = Snapshot { files: [("src/lib.rs".to_string(), text.clone())].into() };
            let analysis = analyze(&snapshot);
            let reads = host_reads(&snapshot);
            if nesting(&text) > MAX_NESTING {
                prop_assert_eq!(analysis.unparsed.len(), 1);
                prop_assert!(!reads.is_empty());
            }
        }
    }
}
