//! The floor plan of docs/architecture.md, held by a test: every module of
//! `src/` belongs to a room, and a module may name another (a `use` line or
//! a path such as `crate::logging::CRITICAL` in code) only along an arrow
//! the plan allows. Also: only the Python rooms use `pyo3`, `http` uses no
//! OS or TLS crate, and the folders of `src/` import each other without a
//! circle.
//!
//! The tables below mirror the document; change both together. A module
//! with no room fails the test: a new feature is placed on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms of docs/architecture.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Room {
    /// Building blocks both processes use; nothing of config, master or
    /// worker.
    Foundation,
    /// The HTTP/1.1 wire format: bytes only.
    Http,
    /// Settings as data.
    Config,
    /// The door between the two programs: what the master hands the
    /// Python program (settings, descriptors, TLS bytes) and the exit codes.
    Handoff,
    /// The Python room: interpreter, app, PEP 3333 objects, hooks, and the
    /// request/response unit's Python side.
    Wsgi,
    /// The worker side of the `--threads` app-thread pool: queues, threads
    /// and wake-ups, no Python.
    AppThreads,
    /// The worker: event loop, connections (bytes, framing, timeouts).
    Worker,
    /// The preload zygote: a process of its own that imports the app once
    /// and forks workers.
    Zygote,
    /// The master: binds, forks, supervises; never Python.
    Master,
}

/// The rooms of the Python program (`src/python_main.rs`): none of them is
/// in the library the master is built from (`src/lib.rs`).
const PYTHON_PROGRAM_ROOMS: &[Room] = &[Worker, AppThreads, Wsgi, Zygote];

use Room::*;

/// Which room each module is in: the longest matching prefix wins (`""` is
/// the crate root, `lib.rs`, and matches only itself). Rooms marked
/// "(next)" hold no code yet; the features that come next go there.
const ROOMS: &[(&str, Room)] = &[
    ("", Foundation),
    ("heartbeat", Foundation),
    ("ip_allow_list", Foundation),
    ("listener", Foundation),
    ("local_time", Foundation),
    ("logging", Foundation),
    ("metrics", Foundation),
    ("os_error", Foundation),
    ("proc_title", Foundation),
    ("proxy_protocol", Foundation),
    ("shared_memory", Foundation),
    ("statsd", Foundation),
    ("tls_info", Foundation),
    ("x509_name", Foundation),
    ("zygote_channel", Foundation),
    ("http", Http),
    ("config", Config),
    ("handoff", Handoff),
    ("worker", Worker),
    ("worker::app_threads", AppThreads), // --threads, worker side
    ("worker::wsgi", Wsgi),
    ("zygote", Zygote), // --preload
    ("master", Master),
];

/// The arrows: the rooms each room may name. Every room may name itself.
const ARROWS: &[(Room, &[Room])] = &[
    (Foundation, &[Http]),
    (Http, &[]),
    (Config, &[Foundation, Http]),
    (Handoff, &[Config, Foundation, Http]),
    (Wsgi, &[Config, Foundation, Http]),
    (AppThreads, &[Config, Foundation, Http]),
    (
        Worker,
        &[Handoff, Wsgi, AppThreads, Config, Foundation, Http],
    ),
    (Zygote, &[Worker, Handoff, Wsgi, Config, Foundation, Http]),
    (Master, &[Handoff, Config, Foundation, Http]),
];

/// Narrow doors: where a room may name another only through a few entry
/// points. The zygote starts Python and enters each worker it forks through
/// `worker::start_python`, `worker::die_with_master` and
/// `worker::run_preloaded`, reads the exit codes, and knows nothing else of
/// it. The master names no room of the Python program at all: it starts
/// that program through `master::python_process` with a
/// `handoff::Handoff`.
const DOORS: &[(Room, &str, &[&str])] = &[(
    Zygote,
    "worker",
    &[
        "run_preloaded",
        "start_python",
        "die_with_master",
        "WorkerContext",
        "APP_LOAD_ERROR",
        "WORKER_BOOT_ERROR",
    ],
)];

/// The rooms that speak Python (may use `pyo3`).
const PYTHON_ROOMS: &[Room] = &[Wsgi, Zygote];

/// Worker modules that still hold Python handles today: worker setup
/// (starting the interpreter, loading the app and the hooks), `check`
/// (`--check-config` imports the app) and the `--reload` watcher. The app
/// call is behind the request/response unit (`wsgi::exchange`); this list
/// may only shrink.
const PYTHON_TODAY: &[&str] = &["worker", "worker::check", "worker::reloader"];

/// Crates a room must not use, beyond `pyo3` outside the Python rooms.
const BANNED_CRATES: &[(Room, &[&str])] = &[
    (
        Http,
        &["mio", "nix", "libc", "signal_hook", "rustls", "socket2"],
    ),
    (Config, &["rustls"]),
    (Master, &["rustls"]),
    (Wsgi, &["rustls"]),
];

#[test]
fn every_import_follows_the_floor_plan() {
    let tree = SourceTree::read();
    let mut broken = Vec::new();
    for file in &tree.files {
        let from = room_of(&file.module)
            .unwrap_or_else(|| panic!("{}: module `{}` has no room", file.path, file.module));
        for reference in &file.references {
            let Some(to_module) = &reference.module else {
                continue;
            };
            let to = room_of(to_module).expect("every module has a room");
            if let Some(why) = forbidden(from, to, to_module, reference.item.as_deref()) {
                broken.push(format!(
                    "{}:{}: `{}` names `{}` ({why})",
                    file.path, reference.line, file.module, reference.path
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports that docs/architecture.md forbids:\n{}",
        broken.join("\n")
    );
}

#[test]
fn only_the_python_rooms_use_pyo3() {
    let tree = SourceTree::read();
    let mut broken = Vec::new();
    let mut still_python = BTreeSet::new();
    for file in &tree.files {
        let room = room_of(&file.module).expect("every module has a room");
        for reference in &file.references {
            if reference.module.is_some() {
                continue;
            }
            let krate = reference.path.split("::").next().unwrap_or_default();
            if krate == "pyo3" {
                if PYTHON_ROOMS.contains(&room) {
                    continue;
                }
                if let Some(today) = PYTHON_TODAY.iter().find(|m| **m == file.module) {
                    still_python.insert(*today);
                    continue;
                }
                broken.push(format!(
                    "{}:{}: `{}` ({room:?}) uses pyo3: only {PYTHON_ROOMS:?} speak Python",
                    file.path, reference.line, file.module
                ));
            }
            let banned = BANNED_CRATES
                .iter()
                .filter(|(r, _)| *r == room)
                .any(|(_, crates)| crates.contains(&krate));
            if banned {
                broken.push(format!(
                    "{}:{}: `{}` ({room:?}) uses `{krate}`",
                    file.path, reference.line, file.module
                ));
            }
        }
    }
    for module in PYTHON_TODAY {
        assert!(
            still_python.contains(module),
            "`{module}` no longer uses pyo3: remove it from PYTHON_TODAY"
        );
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_library_the_master_is_built_from_holds_no_room_of_the_python_program() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let declared: Vec<String> = tokens(&lib)
        .windows(2)
        .filter_map(|pair| match (&pair[0].1, &pair[1].1) {
            (Token::Ident(word), Token::Ident(name)) if word == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(declared.contains(&"master".to_string()), "{declared:?}");
    for module in &declared {
        let room = room_of(module).expect("every module has a room");
        assert!(
            !PYTHON_PROGRAM_ROOMS.contains(&room),
            "src/lib.rs declares `{module}` ({room:?}): the master's library must hold no \
             room of the Python program"
        );
    }
}

#[test]
fn the_folders_import_each_other_without_a_circle() {
    let tree = SourceTree::read();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &tree.files {
        let from = tree.folder_of(&file.module);
        for reference in &file.references {
            if let Some(module) = &reference.module {
                // A module naming its own submodules (`master` using
                // `master::arbiter`) is the module tree, not an import
                // between peers.
                if module.starts_with(&format!("{}::", file.module)) {
                    continue;
                }
                let to = tree.folder_of(module);
                if to != from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        panic!(
            "the folders import each other in a circle: {}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn the_arrows_themselves_have_no_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in ARROWS {
        for to in *tos {
            edges
                .entry(format!("{from:?}"))
                .or_default()
                .insert(format!("{to:?}"));
        }
    }
    assert_eq!(find_circle(&edges), None);
    for (room_module, room) in ROOMS {
        assert!(
            ARROWS.iter().any(|(from, _)| from == room),
            "{room:?} (for `{room_module}`) has no row in ARROWS"
        );
    }
}

/// Why a module of room `from` may not name `to_module` (room `to`), item
/// `item` (the first name after the module), or None when it may.
fn forbidden(from: Room, to: Room, to_module: &str, item: Option<&str>) -> Option<String> {
    if from == to {
        return None;
    }
    let allowed = ARROWS
        .iter()
        .find(|(room, _)| *room == from)
        .is_some_and(|(_, tos)| tos.contains(&to));
    if !allowed {
        return Some(format!("{from:?} may not depend on {to:?}"));
    }
    for (door_from, door_module, entries) in DOORS {
        if *door_from == from && to_module == *door_module {
            return match item {
                Some(item) if entries.contains(&item) => None,
                // `use crate::worker::{self}`: the module name alone; what
                // is named through it is checked where it is used.
                None => None,
                Some(item) => Some(format!(
                    "{from:?} reaches `{door_module}` only through {entries:?}, not `{item}`"
                )),
            };
        }
        // Behind the door's module, but in the door's own room (the wsgi
        // room under `worker` is a room of its own, with its own arrows).
        if *door_from == from
            && to_module.starts_with(&format!("{door_module}::"))
            && room_of(door_module) == Some(to)
        {
            return Some(format!(
                "{from:?} reaches `{door_module}` only through {entries:?}"
            ));
        }
    }
    None
}

fn room_of(module: &str) -> Option<Room> {
    ROOMS
        .iter()
        .filter(|(prefix, _)| {
            module == *prefix || (!prefix.is_empty() && module.starts_with(&format!("{prefix}::")))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, room)| *room)
}

/// A circle in `edges`, as the nodes along it, if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(circle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(circle);
        }
    }
    None
}

/// The programs, which may use everything: `src/main.rs` (the master),
/// `src/wheel_main.rs` (the same program under the Python wheel's name)
/// and `src/python_main.rs` (the Python program, whose crate root names the
/// library's rooms as `crate::config`, ... and holds `src/worker/`).
const PROGRAMS: &[&str] = &["src/main.rs", "src/wheel_main.rs", "src/python_main.rs"];

/// Every module file of the library (the [`PROGRAMS`] are left out).
struct SourceTree {
    files: Vec<SourceFile>,
    /// Module path -> the folder of its file, relative to the crate.
    folders: BTreeMap<String, String>,
}

struct SourceFile {
    path: String,
    module: String,
    references: Vec<Reference>,
}

/// One path that a file names.
#[derive(Debug)]
struct Reference {
    line: usize,
    /// The path as resolved from the crate root (`worker::run`), or, for
    /// another crate, as written (`pyo3::prelude`).
    path: String,
    /// The crate module it lands in; None for another crate.
    module: Option<String>,
    /// The first name after that module, if any.
    item: Option<String>,
}

impl SourceTree {
    fn read() -> SourceTree {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        collect_rs(&root.join("src"), &mut paths);
        let mut modules = BTreeMap::new();
        let mut folders = BTreeMap::new();
        for path in &paths {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if PROGRAMS
                .iter()
                .any(|program| relative == Path::new(program))
            {
                continue;
            }
            let module = module_of(&relative);
            let folder = relative.parent().unwrap().to_string_lossy().into_owned();
            folders.insert(module.clone(), folder);
            modules.insert(module, relative);
        }
        let known: BTreeSet<String> = modules.keys().cloned().collect();
        let files = modules
            .iter()
            .map(|(module, relative)| {
                let text = std::fs::read_to_string(root.join(relative)).unwrap();
                SourceFile {
                    path: relative.to_string_lossy().into_owned(),
                    module: module.clone(),
                    references: references(&text, module, &known),
                }
            })
            .collect();
        SourceTree { files, folders }
    }

    /// The folder of the file that holds `module` (or its nearest
    /// enclosing module with a file, for an inline `mod tests`).
    fn folder_of(&self, module: &str) -> String {
        let mut module = module.to_string();
        loop {
            if let Some(folder) = self.folders.get(&module) {
                return folder.clone();
            }
            match module.rfind("::") {
                Some(end) => module.truncate(end),
                None => module.clear(),
            }
        }
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/worker/wsgi/hooks/mod.rs` -> `worker::wsgi::hooks`; `src/lib.rs` -> ``.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// A token of Rust code with comments and literals removed.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The tokens of `text` with the line each starts on. Comments, strings
/// and character literals are dropped (a path in a doc comment or a
/// message is not an import).
fn tokens(text: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && matches!(chars.get(i), Some('#') | Some('"')) {
                let mut hashes = 0;
                while chars.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                if chars.get(i) == Some(&'"') {
                    i += 1;
                    loop {
                        if i >= chars.len() {
                            break;
                        }
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                            i += 1 + hashes;
                            break;
                        }
                        i += 1;
                    }
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && chars.get(i) == Some(&'"') {
                continue; // the string itself is skipped next
            }
            out.push((line, Token::Ident(word)));
        } else if c == ':' && next == Some(':') {
            out.push((line, Token::PathSep));
            i += 2;
        } else {
            out.push((line, Token::Punct(c)));
            i += 1;
        }
    }
    out
}

/// Every crate path `text` (the file of `module`) names, resolved.
fn references(text: &str, module: &str, known: &BTreeSet<String>) -> Vec<Reference> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    // Names brought in by `use` that stand for crate modules.
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Inline modules (`mod tests {`) and the brace depth they opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let current = current_module(module, &inline);
        match &tokens[i].1 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some((_, Token::Ident(name))), Some((_, Token::Punct('{')))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Token::Ident(word) if word == "use" => {
                let end = (i..tokens.len())
                    .find(|&j| tokens[j].1 == Token::Punct(';'))
                    .unwrap_or(tokens.len());
                let line = tokens[i].0;
                let mut leaves = Vec::new();
                use_tree(&tokens[i + 1..end], &[], &mut leaves);
                for (path, alias) in leaves {
                    let resolved = resolve(&path, &current, &aliases, known);
                    if let (Some(alias), Some(reference)) = (alias, &resolved) {
                        if reference.item.is_none() && reference.module.is_some() {
                            let module = reference.module.clone().unwrap();
                            aliases.insert(alias, split(&module));
                        }
                    }
                    out.extend(resolved.map(|mut r| {
                        r.line = line;
                        r
                    }));
                }
                i = end + 1;
                continue;
            }
            Token::Ident(first) if tokens.get(i + 1).map(|t| &t.1) == Some(&Token::PathSep) => {
                let preceded_by_path = i > 0 && tokens[i - 1].1 == Token::PathSep;
                let line = tokens[i].0;
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while let (Some((_, Token::PathSep)), Some((_, Token::Ident(next)))) =
                    (tokens.get(j), tokens.get(j + 1))
                {
                    path.push(next.clone());
                    j += 2;
                }
                if !preceded_by_path {
                    if let Some(mut reference) = resolve(&path, &current, &aliases, known) {
                        reference.line = line;
                        out.push(reference);
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn current_module(module: &str, inline: &[(String, usize)]) -> Vec<String> {
    let mut path = split(module);
    path.extend(inline.iter().map(|(name, _)| name.clone()));
    path
}

fn split(module: &str) -> Vec<String> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    }
}

/// The leaves of a use tree (`a::{b, c::{self, d as e}, f::*}`), each as
/// its full path and the name it binds (None for a glob).
fn use_tree(
    tokens: &[(usize, Token)],
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(word) if word == "as" => {
                if let Some((_, Token::Ident(alias))) = tokens.get(i + 1) {
                    out.push((path.clone(), Some(alias.clone())));
                    path = prefix.to_vec();
                    i += 1;
                }
            }
            Token::Ident(word) => path.push(word.clone()),
            Token::PathSep => {}
            Token::Punct('*') => {
                out.push((path.clone(), None));
                path = prefix.to_vec();
            }
            Token::Punct('{') => {
                let mut depth = 0;
                let start = i + 1;
                let mut end = start;
                for (j, (_, token)) in tokens.iter().enumerate().skip(i) {
                    match token {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') => {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                // Split the group at its top-level commas.
                let mut level = 0;
                let mut item_start = start;
                for j in start..=end {
                    let token = if j == end { None } else { Some(&tokens[j].1) };
                    match token {
                        Some(Token::Punct('{')) => level += 1,
                        Some(Token::Punct('}')) => level -= 1,
                        Some(Token::Punct(',')) | None if level == 0 => {
                            if item_start < j {
                                use_tree(&tokens[item_start..j], &path, out);
                            }
                            item_start = j + 1;
                        }
                        _ => {}
                    }
                }
                path = prefix.to_vec();
                i = end;
            }
            Token::Punct(',') => {
                if path.len() > prefix.len() {
                    out.push((path.clone(), path.last().cloned()));
                }
                path = prefix.to_vec();
            }
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        let name = path.last().cloned();
        if name.as_deref() == Some("self") {
            path.pop();
            let bound = path.last().cloned();
            out.push((path, bound));
        } else {
            out.push((path, name));
        }
    }
}

/// `path` as named in module `current`: a crate path (from `crate`,
/// `super`, `self`, an alias or a child module) resolved to its module, or
/// another crate's path; None for anything else (`Vec::new`, a local enum).
fn resolve(
    path: &[String],
    current: &[String],
    aliases: &BTreeMap<String, Vec<String>>,
    known: &BTreeSet<String>,
) -> Option<Reference> {
    let first = path.first()?;
    let mut absolute: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => current.to_vec(),
        "super" => current.to_vec(),
        _ => {
            let child = [current, &path[..1]].concat().join("::");
            if let Some(target) = aliases.get(first) {
                target.clone()
            } else if known.contains(&child) {
                split(&child)
            } else {
                return Some(Reference {
                    line: 0,
                    path: path.join("::"),
                    module: None,
                    item: None,
                })
                .filter(|_| is_external_crate(first));
            }
        }
    };
    let mut rest = &path[1..];
    if first == "super" {
        absolute.pop();
        while rest.first().map(String::as_str) == Some("super") {
            absolute.pop();
            rest = &rest[1..];
        }
    }
    absolute.extend(rest.iter().cloned());
    // The longest prefix that is a module of the crate.
    let module_len = (0..=absolute.len())
        .rev()
        .find(|&n| known.contains(&absolute[..n].join("::")))?;
    Some(Reference {
        line: 0,
        path: absolute.join("::"),
        module: Some(absolute[..module_len].join("::")),
        item: absolute.get(module_len).cloned(),
    })
}

/// The crates whose use the plan rules on.
fn is_external_crate(name: &str) -> bool {
    matches!(
        name,
        "pyo3" | "mio" | "nix" | "libc" | "signal_hook" | "signal_hook_mio" | "rustls" | "socket2"
    )
}

#[test]
fn the_reader_finds_paths_in_use_lines_and_in_code() {
    let known: BTreeSet<String> = [
        "",
        "config",
        "worker",
        "worker::check",
        "worker::wsgi",
        "logging",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let text = r#"
        //! A doc comment naming crate::master::Arbiter is not an import.
        use crate::config::{self, Settings};
        use super::wsgi;
        use pyo3::prelude::*;
        fn f() {
            let s = "crate::master::x";
            log::error!(target: crate::logging::CRITICAL, "{}", 'x');
            config::load();
            wsgi::environ::make();
        }
        #[cfg(test)]
        mod tests {
            use super::*;
        }
    "#;
    let found: Vec<(String, Option<String>)> = references(text, "worker::check", &known)
        .into_iter()
        .map(|r| (r.path, r.module))
        .collect();
    let some = |m: &str| Some(m.to_string());
    assert_eq!(
        found,
        [
            ("config".to_string(), some("config")),
            ("config::Settings".to_string(), some("config")),
            ("worker::wsgi".to_string(), some("worker::wsgi")),
            ("pyo3::prelude".to_string(), None),
            ("logging::CRITICAL".to_string(), some("logging")),
            ("config::load".to_string(), some("config")),
            (
                "worker::wsgi::environ::make".to_string(),
                some("worker::wsgi")
            ),
            ("worker::check".to_string(), some("worker::check")),
        ]
    );
}
