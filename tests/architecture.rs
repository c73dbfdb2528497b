//! The module tree has no import cycles: at every level, the sibling modules under one parent depend on
//! each other without a cycle (docs/DESIGN.md, "The layers of the code"). A module may use its ancestors' items and its
//! own descendants freely; a reference between two modules in different subtrees counts as an edge
//! between the two siblings under their lowest common ancestor. References are read from the source
//! text of the library (src/, without main.rs): every `crate::...` and `super::...` path, braces
//! included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// The module path of a library source file: `src/io/data.rs` -> [io, data]; `mod.rs` is its folder.
fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// Every full path (segments) named after `prefix` in `src` (comments stripped), braces expanded.
fn paths_after(src: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut at = 0;
    while let Some(i) = src[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        let before = if start == 0 { b' ' } else { bytes[start - 1] };
        if before.is_ascii_alphanumeric() || before == b'_' || before == b'$' || before == b':' {
            continue;
        }
        let (paths, _) = parse_tree(src, at);
        out.extend(paths);
    }
    out
}

/// Parses `a::b::{c, d::e}` starting at `pos`; returns the expanded paths and where parsing stopped.
fn parse_tree(src: &str, mut pos: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = src.as_bytes();
    let skip_ws = |mut p: usize| {
        while p < bytes.len() && bytes[p].is_ascii_whitespace() {
            p += 1;
        }
        p
    };
    let mut segs: Vec<String> = Vec::new();
    loop {
        pos = skip_ws(pos);
        if pos < bytes.len() && bytes[pos] == b'{' {
            let mut all = Vec::new();
            pos += 1;
            loop {
                pos = skip_ws(pos);
                if pos >= bytes.len() || bytes[pos] == b'}' {
                    pos += 1;
                    break;
                }
                if bytes[pos] == b',' {
                    pos += 1;
                    continue;
                }
                let (inner, next) = parse_tree(src, pos);
                for p in inner {
                    let mut full = segs.clone();
                    full.extend(p);
                    all.push(full);
                }
                pos = next.max(pos + 1);
            }
            return (all, pos);
        }
        let start = pos;
        while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_') {
            pos += 1;
        }
        if start == pos {
            break;
        }
        segs.push(src[start..pos].to_string());
        if src[pos..].starts_with("::") {
            pos += 2;
        } else {
            break;
        }
    }
    (vec![segs], pos)
}

fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sibling dependency graphs: for each parent module, edges child -> child with one example each.
type Graphs = BTreeMap<Module, BTreeMap<String, BTreeMap<String, String>>>;

fn sibling_graphs(files: &[(Module, String)]) -> Graphs {
    let known: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let resolve = |path: &[String]| -> Option<Module> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))
    };
    let mut graphs: Graphs = BTreeMap::new();
    for (from, raw) in files {
        let src = strip_comments(raw);
        let mut targets: Vec<Vec<String>> = paths_after(&src, "crate::");
        // `super::` from module [a, b, c] is [a, b]; `super::super::` is [a].
        for p in paths_after(&src, "super::") {
            let mut base = from[..from.len().saturating_sub(1)].to_vec();
            let mut rest = p.as_slice();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            targets.push(base);
        }
        for t in targets {
            let Some(to) = resolve(&t) else { continue };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // ancestor or descendant
            }
            graphs
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .entry(to[common].clone())
                .or_insert_with(|| format!("{} uses {}", from.join("::"), t.join("::")));
        }
    }
    graphs
}

/// Every cycle found, as "parent: a -> b -> a (a uses ..., b uses ...)".
fn cycles(graphs: &Graphs) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, edges) in graphs {
        let nodes: Vec<&String> = edges.keys().collect();
        for start in nodes {
            // Depth-first search for a path back to `start`.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for next in edges.get(&node).map(|e| e.keys()).into_iter().flatten() {
                    if next == start {
                        let mut why = Vec::new();
                        let mut full = path.clone();
                        full.push(next.clone());
                        for w in full.windows(2) {
                            why.push(edges[&w[0]][&w[1]].clone());
                        }
                        found.push(format!(
                            "in `{}`: {} ({})",
                            if parent.is_empty() {
                                "crate".to_string()
                            } else {
                                parent.join("::")
                            },
                            full.join(" -> "),
                            why.join("; ")
                        ));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
    found
}

/// The library's files: this crate's src/, or the tree `WGTRAIN_ARCH_SRC` names (to check another
/// checkout, e.g. an older commit, without building it).
fn library_files() -> Vec<(Module, String)> {
    let root = std::env::var_os("WGTRAIN_ARCH_SRC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
                let rel = path.strip_prefix(&root).unwrap();
                out.push((module_of(rel), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

#[test]
fn no_module_import_cycles() {
    let files = library_files();
    assert!(files.len() > 20, "the library's files were found");
    let graphs = sibling_graphs(&files);
    for (parent, edges) in &graphs {
        let deps: Vec<String> = edges
            .iter()
            .map(|(a, to)| {
                format!(
                    "{a} -> {}",
                    to.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        println!("[{}] {}", parent.join("::"), deps.join(" | "));
    }
    // The top level is layered as docs/DESIGN.md says: backend is used by model, study by no core module.
    let top = &graphs[&Vec::new()];
    assert!(top["model"].contains_key("backend"), "{top:?}");
    let found = cycles(&graphs);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// The check can fail: two sibling modules that use each other, once through `crate::` and once
/// through `super::` with braces, are reported.
#[test]
fn a_cycle_is_reported() {
    let files = vec![
        (vec![], String::new()),
        (vec!["a".into()], String::new()),
        (
            vec!["a".into(), "x".into()],
            "use crate::b::{y::Thing, z};".into(),
        ),
        (vec!["b".into()], String::new()),
        (
            vec!["b".into(), "y".into()],
            "fn f() { super::super::a::x::g() }".into(),
        ),
        (vec!["b".into(), "z".into()], String::new()),
    ];
    let found = cycles(&sibling_graphs(&files));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("a -> b -> a"), "{found:?}");
}
