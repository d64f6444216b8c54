//! The import rules of ARCHITECTURE.md, checked against the code: every `crate::` path in
//! `src/` (outside `src/bin` and `src/lib.rs`) is an edge from the top-level module of its
//! file to the top-level module it names, and every edge must be in the allow-list below.
//! A new module must also have its line in ARCHITECTURE.md's layout.
//!
//! How the source is read: comments, doc comments and string and character literals are
//! blanked out (line numbers kept); then `crate::a`, `crate::{a, b::c}`, `$crate::a` and
//! `super::` chains that climb out of the top-level module are resolved. A name re-exported
//! at the crate root (`crate::SecureLayer`) counts as the module it comes from, read from
//! `src/lib.rs`. std only: no parser crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Which top-level module may use which: the layered order of ARCHITECTURE.md, lowest
/// first. An edge not listed here fails the test. Keep it in step with the
/// "Which way imports point" section.
const ALLOWED: &[(&str, &[&str])] = &[
    // The ground floor: imports nothing of the crate.
    ("sql_pool", &[]),
    // Metric names and labels (SPEC I4): every layer may record.
    ("telemetry", &[]),
    ("identity", &["sql_pool", "telemetry"]),
    ("state", &["sql_pool", "telemetry"]),
    ("error", &[]),
    // The TOML model: builds user records.
    ("config", &["identity"]),
    // Matching knows no credentials: never `authn` or `authz`.
    ("policy", &["config", "identity"]),
    // Code first: fills the model the files fill, and checks it as they are checked; the
    // built-in handlers' builders build them from it.
    ("code", &["authn", "config", "identity", "policy"]),
    // Who is calling, and what they may do: never each other.
    ("authn", &["config", "error", "identity", "policy", "state", "telemetry"]),
    ("authz", &["config", "error", "identity", "policy"]),
    // Beside the request path.
    ("tls", &["authn", "config"]),
    ("oauth2", &["authn", "config", "error", "identity", "policy", "state"]),
    // The request path and what assembles it.
    ("layer", &["authn", "authz", "error", "identity", "policy", "telemetry"]),
    ("extract", &["error", "identity", "layer"]),
    ("secure_attr", &["authz", "config", "error", "identity", "layer", "policy"]),
    ("listing", &["config", "layer", "policy", "secure_attr"]),
    ("openapi", &["config", "layer", "listing", "policy", "secure_attr"]),
    ("reload", &["authn", "authz", "config", "error", "identity", "layer", "oauth2", "policy", "secure_attr"]),
    ("builder", &["authn", "authz", "config", "error", "identity", "layer", "oauth2", "reload"]),
    // Test support for users' tests: tokens for an issuer built in code, a caller put
    // where the layer puts it.
    ("testing", &["code", "config", "error", "identity", "layer"]),
];

/// Edges the code has today that ARCHITECTURE.md says should go: tolerated until they are
/// removed, then deleted here (the stale-edge test insists), so they cannot come back.
const TO_REMOVE: &[(&str, &str, &str)] = &[];

/// Where `crate::` (or a climbing `super::`) was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
    /// The path as written, shortened: `crate::authn::X`.
    written: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {} -> {} (`{}`)", self.file, self.line, self.from, self.to, self.written)
    }
}

/// What the crate root defines: its modules, and the names it re-exports from them.
#[derive(Debug, Default)]
struct Root {
    modules: BTreeSet<String>,
    /// `SecureLayer` -> `layer`.
    reexports: BTreeMap<String, String>,
    /// Names the root defines itself or takes from other crates (`async_trait`, `__private`):
    /// no edge.
    own: BTreeSet<String>,
}

impl Root {
    /// Reads `src/lib.rs`: `mod x;` declarations, `pub use x::{A, B as C};` re-exports, and
    /// the items it defines itself (`pub const AUDIT_TARGET`).
    fn parse(lib_rs: &str) -> Self {
        let tokens = tokenize(&blank(lib_rs));
        let kind = |k: usize| tokens.get(k).map(|t| &t.kind);
        let mut root = Root::default();
        for k in 0..tokens.len() {
            if let (Some(Tok::Ident(kw)), Some(Tok::Ident(name))) = (kind(k), kind(k + 1)) {
                let item = ["const", "static", "fn", "struct", "enum", "union", "trait", "type"].contains(&kw.as_str());
                match kind(k + 2) {
                    Some(Tok::Punct(';')) if kw == "mod" => root.modules.insert(name.clone()),
                    Some(Tok::Punct('{')) if kw == "mod" => root.own.insert(name.clone()),
                    _ if item => root.own.insert(name.clone()),
                    _ => false,
                };
            }
        }
        for k in 0..tokens.len() {
            if kind(k) != Some(&Tok::Ident("use".to_owned())) {
                continue;
            }
            let end = (k..tokens.len()).find(|&j| tokens[j].kind == Tok::Punct(';')).unwrap_or(tokens.len());
            let statement = &tokens[k + 1..end];
            let first = match statement.first().map(|t| &t.kind) {
                Some(Tok::Ident(first)) => first.clone(),
                _ => String::new(),
            };
            for leaf in use_leaves(statement) {
                if root.modules.contains(&first) {
                    root.reexports.insert(leaf, first.clone());
                } else {
                    root.own.insert(leaf);
                }
            }
        }
        root
    }

    fn resolve(&self, name: &str) -> Resolved {
        if self.modules.contains(name) {
            Resolved::Module(name.to_owned())
        } else if let Some(module) = self.reexports.get(name) {
            Resolved::Module(module.clone())
        } else if self.own.contains(name) || name == "self" {
            Resolved::Root
        } else {
            Resolved::Unknown
        }
    }
}

enum Resolved {
    Module(String),
    Root,
    Unknown,
}

/// The names a `use` tree brings in (its last segments, or the `as` names).
fn use_leaves(statement: &[Token]) -> Vec<String> {
    let mut leaves = Vec::new();
    for (k, token) in statement.iter().enumerate() {
        let Tok::Ident(name) = &token.kind else { continue };
        let next = statement.get(k + 1).map(|t| &t.kind);
        let followed_by_as = matches!(next, Some(Tok::Ident(a)) if a == "as");
        let ends_item = matches!(next, None | Some(Tok::Punct(',' | '}' | ';')));
        if ends_item && !followed_by_as && name != "self" {
            leaves.push(name.clone());
        }
    }
    leaves
}

/// Replaces comments, string, byte-string and character literals with spaces, keeping
/// newlines, so that line numbers stay and nothing inside them reads as code.
fn blank(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let keep_lines = |out: &mut String, text: &[char]| {
        for &c in text {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len());
            keep_lines(&mut out, &chars[i..end]);
            i = end;
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, i);
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            keep_lines(&mut out, &chars[i..j.min(chars.len())]);
            i = j;
        } else if let Some(end) = raw_string_end(&chars, i) {
            keep_lines(&mut out, &chars[i..end]);
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            keep_lines(&mut out, &chars[i..end]);
            i = end;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}', '"'), or a lifetime / label ('a).
            let end = match next {
                Some('\\') => (i + 3..chars.len()).find(|&j| chars[j] == '\'').map(|j| j + 1),
                Some(_) if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
                _ => None,
            };
            match end {
                Some(end) => {
                    keep_lines(&mut out, &chars[i..end]);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The end of a raw (byte/C) string literal starting at `i`: `r"..."`, `br#"..."#`, ...
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    (j + 1..chars.len()).find(|&k| chars[k..].starts_with(&closing)).map(|k| k + closing.len())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    line: usize,
}

/// Identifiers (raw ones without `r#`) and single punctuation characters; numbers and
/// white space are dropped.
fn tokenize(blanked: &str) -> Vec<Token> {
    let chars: Vec<char> = blanked.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' || c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word == "r" && chars.get(i) == Some(&'#') && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) {
                i += 1; // `r#ident`: the identifier follows.
                continue;
            }
            if !c.is_ascii_digit() {
                tokens.push(Token { kind: Tok::Ident(word), line });
            }
        } else {
            tokens.push(Token { kind: Tok::Punct(c), line });
            i += 1;
        }
    }
    tokens
}

/// The top-level module of a file under `src/` (`authn/bearer.rs` -> `authn`) and how deep
/// its own module sits (`authn/mod.rs` 1, `authn/bearer.rs` 2); `None` for `lib.rs` and
/// `bin/`.
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let first = parts.first()?;
    if first == "lib.rs" || first == "bin" {
        return None;
    }
    let top = first.strip_suffix(".rs").unwrap_or(first).to_owned();
    let last = parts.last()?;
    let depth = if last == "mod.rs" { parts.len() - 1 } else { parts.len() };
    Some((top, depth))
}

/// The edges of one file as they are found, and the `crate::` names that resolve to
/// nothing known (an error: the checker must not guess).
struct Found<'r> {
    root: &'r Root,
    file: String,
    module: String,
    edges: Vec<Edge>,
    unknown: Vec<String>,
}

impl Found<'_> {
    fn record(&mut self, name: &str, line: usize, written: String) {
        match self.root.resolve(name) {
            Resolved::Module(to) => {
                let (from, file) = (self.module.clone(), self.file.clone());
                self.edges.push(Edge { from, to, file, line, written });
            }
            Resolved::Root => {}
            Resolved::Unknown => {
                self.unknown.push(format!("{}:{line}: `{written}` names nothing in src/lib.rs", self.file))
            }
        }
    }
}

/// Every edge (including a module's edges to itself) one file has, and the paths that
/// resolve to nothing known.
fn edges_of(file: &str, module: &str, depth: usize, source: &str, root: &Root) -> (Vec<Edge>, Vec<String>) {
    let tokens = tokenize(&blank(source));
    let mut found =
        Found { root, file: file.to_owned(), module: module.to_owned(), edges: Vec::new(), unknown: Vec::new() };
    let is = |k: usize, want: &Tok| tokens.get(k).map(|t| &t.kind) == Some(want);
    let path_sep = |k: usize| is(k, &Tok::Punct(':')) && is(k + 1, &Tok::Punct(':'));
    let ident = |k: usize| match tokens.get(k).map(|t| &t.kind) {
        Some(Tok::Ident(name)) => Some(name.clone()),
        _ => None,
    };
    // Inline `mod name { ... }` blocks: `super` inside them climbs one module less far.
    let (mut braces, mut inline_mods): (usize, Vec<usize>) = (0, Vec::new());
    for k in 0..tokens.len() {
        match &tokens[k].kind {
            Tok::Punct('{') => {
                if k >= 2 && ident(k - 2).as_deref() == Some("mod") && ident(k - 1).is_some() {
                    inline_mods.push(braces);
                }
                braces += 1;
            }
            Tok::Punct('}') => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            Tok::Ident(word) if (word == "crate" || word == "super") && !(k >= 2 && path_sep(k - 2)) => {
                // Where the path leaves the crate root, if it does.
                let mut after_root = None;
                if word == "crate" && path_sep(k + 1) {
                    after_root = Some(k + 3);
                } else if word == "super" {
                    let (mut climbs, mut j) = (0, k);
                    while ident(j).as_deref() == Some("super") && path_sep(j + 1) {
                        climbs += 1;
                        j += 3;
                    }
                    if climbs >= depth + inline_mods.len() {
                        after_root = Some(j);
                    }
                }
                let Some(start) = after_root else { continue };
                let head = if word == "crate" { "crate" } else { "super::..." };
                if let Some(name) = ident(start) {
                    found.record(&name, tokens[start].line, format!("{head}::{name}"));
                } else if is(start, &Tok::Punct('{')) {
                    for (name, line) in group_heads(&tokens, start) {
                        found.record(&name, line, format!("{head}::{{{name}, ..}}"));
                    }
                } else {
                    let line = tokens[k].line;
                    found.unknown.push(format!("{file}:{line}: a `{head}::` path this checker cannot read"));
                }
            }
            _ => {}
        }
    }
    (found.edges, found.unknown)
}

/// The first segment of each item of a `{ ... }` use group starting at `open`
/// (`{a, b::{c, d}}` -> a, b), with its line; a glob item is returned as `*`.
fn group_heads(tokens: &[Token], open: usize) -> Vec<(String, usize)> {
    let mut heads = Vec::new();
    let (mut depth, mut expect_head) = (0usize, true);
    for token in &tokens[open..] {
        match &token.kind {
            Tok::Punct('{') => {
                depth += 1;
                if depth > 1 {
                    expect_head = false;
                }
                continue;
            }
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                continue;
            }
            Tok::Punct(',') if depth == 1 => {
                expect_head = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && expect_head {
            match &token.kind {
                Tok::Ident(name) => heads.push((name.clone(), token.line)),
                Tok::Punct(c) => heads.push((c.to_string(), token.line)),
            }
            expect_head = false;
        }
    }
    heads
}

/// The edges that break the rules: not to the module itself, not allowed, not tolerated.
fn forbidden(edges: &[Edge]) -> Vec<&Edge> {
    edges.iter().filter(|e| e.from != e.to && !is_allowed(&e.from, &e.to)).collect()
}

fn is_allowed(from: &str, to: &str) -> bool {
    let listed = ALLOWED.iter().any(|(f, tos)| *f == from && tos.contains(&to));
    listed || TO_REMOVE.iter().any(|(f, t, _)| *f == from && *t == to)
}

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|x| x == "rs") {
            found.push(path);
        }
    }
}

/// The crate as it is on disk: its root and every edge of every file, plus unreadable paths.
fn scan() -> (Root, Vec<Edge>, Vec<String>) {
    let src = root_dir().join("src");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root = Root::parse(&read(&src.join("lib.rs")));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (mut edges, mut unknown) = (Vec::new(), Vec::new());
    for path in files {
        let relative = path.strip_prefix(&src).expect("under src");
        let Some((module, depth)) = module_of(relative) else { continue };
        let name = format!("src/{}", relative.display());
        let (found, unresolved) = edges_of(&name, &module, depth, &read(&path), &root);
        edges.extend(found);
        unknown.extend(unresolved);
    }
    (root, edges, unknown)
}

#[test]
fn imports_follow_the_allowed_edges() {
    // SPEC I1: the code has no import edge between top-level modules that ARCHITECTURE.md does not allow.
    let started = std::time::Instant::now();
    let (root, edges, unknown) = scan();
    assert!(unknown.is_empty(), "crate paths the checker cannot resolve:\n{}", unknown.join("\n"));
    assert!(edges.len() > 50, "the checker found only {} crate paths: it is not reading the code", edges.len());
    let mut report: Vec<String> = forbidden(&edges).iter().map(|e| e.to_string()).collect();
    for module in root.modules.iter().filter(|m| !ALLOWED.iter().any(|(f, _)| f == m)) {
        report.push(format!("src/lib.rs: module `{module}` has no row in ALLOWED"));
    }
    assert!(
        report.is_empty(),
        "imports against the layering of ARCHITECTURE.md (\"Which way imports point\"):\n{}\n\
         Move the code, or change the design in ARCHITECTURE.md and ALLOWED in tests/architecture.rs together.",
        report.join("\n")
    );
    eprintln!("{} crate paths checked in {:?}", edges.len(), started.elapsed());
}

#[test]
fn allow_list_has_no_stale_edges() {
    // SPEC I1: every edge the allow-list grants is one the code has: the table is the true map,
    // and a removed edge cannot creep back.
    let (_, edges, _) = scan();
    let used: BTreeSet<(&str, &str)> = edges.iter().map(|e| (e.from.as_str(), e.to.as_str())).collect();
    let granted = ALLOWED.iter().flat_map(|(f, tos)| tos.iter().map(move |t| (*f, *t)));
    let tolerated = TO_REMOVE.iter().map(|(f, t, _)| (*f, *t));
    let stale: Vec<String> =
        granted.chain(tolerated).filter(|edge| !used.contains(edge)).map(|(f, t)| format!("{f} -> {t}")).collect();
    assert!(
        stale.is_empty(),
        "edges ALLOWED or TO_REMOVE grants that no code uses any more; \
         delete them there and in ARCHITECTURE.md: {stale:?}"
    );
}

#[test]
fn architecture_md_maps_every_module() {
    // SPEC I1: ARCHITECTURE.md has a layout line for every top-level module and names every edge marked to remove.
    let text = std::fs::read_to_string(root_dir().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the crate root");
    let (root, _, _) = scan();
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(root_dir().join("src")).expect("src/") {
        let path = entry.expect("directory entry").path();
        let relative = path.strip_prefix(root_dir().join("src")).expect("under src");
        let is_module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
        if let (true, Some((module, _))) = (is_module, module_of(relative)) {
            on_disk.insert(module);
        }
    }
    let modules: BTreeSet<&String> = root.modules.iter().chain(&on_disk).collect();
    let unmapped: Vec<&&String> = modules
        .iter()
        .filter(|m| !text.contains(&format!("src/{m}.rs")) && !text.contains(&format!("src/{m}/")))
        .collect();
    assert!(
        unmapped.is_empty(),
        "modules with no `src/<name>.rs` or `src/<name>/` line in ARCHITECTURE.md: {unmapped:?}"
    );
    let unnamed: Vec<String> = TO_REMOVE
        .iter()
        .map(|(f, t, _)| format!("{f} -> {t}"))
        .filter(|edge| !text.contains(&format!("`{edge}`")))
        .collect();
    assert!(unnamed.is_empty(), "edges to remove that ARCHITECTURE.md does not name (as `from -> to`): {unnamed:?}");
}

/// A root like the real one, for the synthetic files below.
fn fake_root() -> Root {
    Root::parse(
        "mod authn;\nmod authz;\nmod identity;\nmod layer;\nmod policy;\npub mod __private { pub use inventory; }\n\
         pub use layer::{AuthContext, SecureLayer as Layer};\npub use async_trait::async_trait;\n",
    )
}

fn forbidden_in(file: &str, source: &str) -> Vec<String> {
    let (module, depth) = module_of(Path::new(file)).expect("a module file");
    let (edges, unknown) = edges_of(&format!("src/{file}"), &module, depth, source, &fake_root());
    assert!(unknown.is_empty(), "{unknown:?}");
    forbidden(&edges).iter().map(|e| e.to_string()).collect()
}

#[test]
fn checker_reports_a_forbidden_edge() {
    // SPEC I1: the checker fails on a forbidden edge (identity -> authn, policy -> authz, authn -> authz)
    // and names the file, the line and the edge.
    let found = forbidden_in("identity/principal.rs", "use std::fmt;\n\nuse crate::authn::X;\n");
    assert_eq!(found, ["src/identity/principal.rs:3: identity -> authn (`crate::authn`)"]);

    // Grouped, nested and inline forms; the item's own line is reported.
    let grouped = "use crate::{\n    identity::Permission,\n    authz::{self, Y},\n};\n\
                   fn f() { let _ = crate::authn::header::parse(\"\"); }\n";
    let found = forbidden_in("policy/rule.rs", grouped);
    assert_eq!(
        found,
        [
            "src/policy/rule.rs:3: policy -> authz (`crate::{authz, ..}`)",
            "src/policy/rule.rs:5: policy -> authn (`crate::authn`)"
        ]
    );

    // A root re-export counts as its module; `$crate` as `crate`.
    let found = forbidden_in(
        "identity/store.rs",
        "fn f(l: crate::Layer) {}\nmacro_rules! m { () => { $crate::AuthContext } }\n",
    );
    assert_eq!(
        found,
        [
            "src/identity/store.rs:1: identity -> layer (`crate::Layer`)",
            "src/identity/store.rs:2: identity -> layer (`crate::AuthContext`)"
        ]
    );

    // `super::super` out of `authn` reaches the crate root; inside an inline module it does not.
    let climbing = "use super::super::authz::check;\nmod tests {\n    use super::super::jwks::Keys;\n}\n";
    assert_eq!(
        forbidden_in("authn/bearer.rs", climbing),
        ["src/authn/bearer.rs:1: authn -> authz (`super::...::authz`)"]
    );

    // Allowed edges and edges within a module pass; external re-exports and root items are no edge.
    let fine = "use crate::identity::Principal;\nuse crate::authn::jwks;\n\
                use crate::async_trait;\nuse crate::__private::inventory;\n";
    assert!(forbidden_in("authn/basic.rs", fine).is_empty());
}

#[test]
fn comments_and_literals_are_not_code() {
    // SPEC I1: `crate::` in comments, doc comments, string, raw-string and character literals is no edge,
    // and line numbers survive the blanking.
    let source = r####"//! See [`crate::authn::Handler`].
/// Uses [`crate::authz::check`].
// crate::authn::nothing
/* crate::authn::a /* nested crate::authz::b */ still comment crate::authn::c */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::authn::in_a_string \" crate::authz::escaped";
    let _ = r#"crate::authn::raw "quoted" crate::authz::raw"#;
    let _ = b"crate::authn::bytes";
    let _ = ['"', '\'', '\u{22}'];
    'label: loop { break 'label; }
    let _ = crate::authn::REAL;
    '"'
}
"####;
    assert_eq!(
        forbidden_in("identity/name.rs", source),
        ["src/identity/name.rs:11: identity -> authn (`crate::authn`)"]
    );
    let blanked = blank(source);
    assert_eq!(blanked.lines().count(), source.lines().count());
    assert!(blanked.contains("fn f<'a>(x: &'a str) -> char {"), "{blanked}");
}
