//! `cargo xtask cycles`: no crate of the workspace has an import cycle
//! between its modules. Each module file's references to `crate::NAME`
//! (in `use` items or paths) are edges to the top-level module `NAME`; the
//! crate root (which declares and re-exports the modules) is not a node.
//! Any cycle fails, printed as `a -> b -> a`.
//!
//! It also checks the server's seams: no module of `wsc-server` but its
//! builder names the Redis crates (`wsc_redis`, `redis`) — what crosses
//! gateways is behind the broker trait, and the builder alone picks Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::root;

/// The module graph of one crate: module -> modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

pub(crate) fn cycles() -> ExitCode {
    let mut failed = false;
    let mut checked = 0;
    for src in source_dirs() {
        let graph = match graph_of(&src) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("xtask cycles: {}: {e}", src.display());
                return ExitCode::from(1);
            }
        };
        checked += 1;
        if let Some(cycle) = find_cycle(&graph) {
            eprintln!(
                "xtask cycles: {}: import cycle {}",
                src.display(),
                cycle.join(" -> ")
            );
            failed = true;
        }
    }
    match redis_outside_the_builder(&root().join("crates/server/src")) {
        Ok(found) if found.is_empty() => {}
        Ok(found) => {
            for line in found {
                eprintln!("xtask cycles: the server names Redis outside its builder: {line}");
            }
            failed = true;
        }
        Err(e) => {
            eprintln!("xtask cycles: crates/server/src: {e}");
            failed = true;
        }
    }
    if failed {
        return ExitCode::from(1);
    }
    println!(
        "xtask cycles: no import cycle in the modules of {checked} crates; \
         the server names Redis only in its builder"
    );
    ExitCode::SUCCESS
}

/// Every crate's `src/` in the workspace.
fn source_dirs() -> Vec<PathBuf> {
    let root = root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.extend(
        ["tests/src", "xtask/src"]
            .iter()
            .map(|d| root.join(d))
            .filter(|p| p.is_dir()),
    );
    dirs.sort();
    dirs
}

/// The top-level modules of a crate (`src/NAME.rs` or `src/NAME/mod.rs`)
/// and their references to each other.
fn graph_of(src: &Path) -> std::io::Result<Graph> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.extension().is_some_and(|e| e == "rs") && !matches!(name, "lib" | "main") {
            files.push((name.to_owned(), path.clone()));
        } else if path.is_dir() && path.join("mod.rs").is_file() {
            files.push((name.to_owned(), path.join("mod.rs")));
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let mut graph = Graph::new();
    for (name, path) in &files {
        let text = std::fs::read_to_string(path)?;
        let edges = references(&text)
            .into_iter()
            .filter(|m| m != name && modules.contains(m))
            .collect();
        graph.insert(name.clone(), edges);
    }
    Ok(graph)
}

/// The `NAME`s of every `crate::NAME` in `text` (outside line comments),
/// including those inside `use crate::{a::X, b}` groups.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a::X, b}`: the first segment of each item.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let first: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !first.is_empty() {
                        out.insert(first);
                    }
                }
            } else {
                let first: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    out.insert(first);
                }
            }
            rest = after;
        }
    }
    out
}

/// A cycle of the graph (its nodes in order, the first repeated last), if
/// there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(node, graph, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(n, to)| {
                (
                    (*n).to_owned(),
                    to.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn references_cover_paths_groups_and_skip_comments() {
        let text = "use crate::a::X;\nuse crate::{b::Y, c};\nlet z = crate::d::f(); // crate::e\n";
        let got: Vec<String> = references(text).into_iter().collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_loop_is_found_and_a_chain_is_not() {
        let chain = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[])]);
        assert_eq!(find_cycle(&chain), None);
        let looped = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(
            find_cycle(&looped),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}

/// Code lines (not comments) of the server's modules other than
/// `builder.rs` that name the Redis crates, as `file:line: text`.
fn redis_outside_the_builder(src: &Path) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter(|p| p.file_name().is_some_and(|n| n != "builder.rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        for (i, line) in text.lines().enumerate() {
            if names_redis(line) {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    Ok(found)
}

/// Whether a line of code (comments aside) names `wsc_redis` or the
/// `redis` crate as a path.
fn names_redis(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    let is_path_start = |at: usize| {
        at == 0
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    ["wsc_redis", "redis::"]
        .iter()
        .any(|needle| code.match_indices(needle).any(|(at, _)| is_path_start(at)))
}

#[cfg(test)]
mod seam_tests {
    use super::names_redis;

    #[test]
    fn redis_paths_are_found_and_look_alikes_are_not() {
        assert!(names_redis("use wsc_redis::RedisConnection;"));
        assert!(names_redis("    let c = redis::cmd(\"PING\");"));
        assert!(names_redis("fn f(x: ::wsc_redis::X) {}"));
        assert!(!names_redis(
            "    s.shared_store_failed(); // was redis::cmd"
        ));
        assert!(!names_redis("/// see wsc_redis"));
        assert!(!names_redis("let my_redis = 1; fn a(x: not_redis::X) {}"));
    }
}
