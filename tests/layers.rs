//! The layering of `src/` stated in `src/lib.rs` holds: a module uses only
//! modules on its own layer or below. Read from the source, so a new import
//! from a higher layer fails here before it becomes a cycle.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layer table from lib.rs's doc comment: `//! | N | a, b |` rows.
fn layers() -> BTreeMap<String, u32> {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(level) = cells[0].parse::<u32>() else {
            continue;
        };
        for module in cells[1].split(',') {
            let module = module.trim().trim_matches('`').trim_end_matches('/');
            layers.insert(module.to_string(), level);
        }
    }
    assert!(
        layers.len() >= 6,
        "lib.rs states no layer table: {layers:?}"
    );
    layers
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/hub/run.rs` -> `hub`.
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every top-level module a file names through `crate::`, including each
/// item of a `use crate::{a, b::c}` group (on one line or many), with its
/// line number. Comments are skipped.
fn used_modules(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = code[from..].find("crate::") {
        let at = from + offset + "crate::".len();
        from = at;
        if code[at..].starts_with('{') {
            // the group's items at depth 0
            let mut depth = 0;
            let mut item_start = at + 1;
            for (i, c) in code[at..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let name = ident(code[item_start..at + i].trim_start());
                        if !name.is_empty() {
                            let lead =
                                code[item_start..].len() - code[item_start..].trim_start().len();
                            found.push((line_of(item_start + lead), name));
                        }
                        item_start = at + i + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            let name = ident(&code[at..]);
            if !name.is_empty() {
                found.push((line_of(at), name));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_from_a_higher_layer() {
    let layers = layers();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(top) = top_module(file) else {
            continue;
        };
        let Some(&own) = layers.get(&top) else {
            violations.push(format!(
                "{}: module `{top}` is in no layer of lib.rs's table",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for (line, used) in used_modules(&text) {
            match layers.get(&used) {
                Some(&level) if level > own => violations.push(format!(
                    "{}:{line}: `{top}` (layer {own}) uses `{used}` (layer {level})",
                    file.strip_prefix(src()).unwrap().display()
                )),
                _ => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_an_import_from_above() {
    let text = "use crate::{sys::fsutil, hub::Paths};\nuse crate::{\n    state::{paths, lock},\n    cli,\n};\nfn f() { crate::feed::run(); }\n// crate::doctor\n";
    let used = used_modules(text);
    assert_eq!(
        used,
        [
            (1, "sys".to_string()),
            (1, "hub".to_string()),
            (3, "state".to_string()),
            (4, "cli".to_string()),
            (6, "feed".to_string())
        ]
    );
}

/// Which top-level modules each top-level module uses (itself left out).
fn module_graph() -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let layers = layers();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(top) = top_module(file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        let uses = graph.entry(top.clone()).or_default();
        for (_, used) in used_modules(&text) {
            if used != top && layers.contains_key(&used) {
                uses.insert(used);
            }
        }
    }
    graph
}

/// A cycle in `graph` as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Modules on one layer may use each other, but never both ways round: a
/// cycle is what the layering exists to prevent (issue 14).
#[test]
fn no_import_cycle_between_top_level_modules() {
    let cycle = find_cycle(&module_graph());
    assert!(
        cycle.is_none(),
        "top-level modules use each other in a cycle: {}",
        cycle.unwrap_or_default().join(" -> ")
    );
}

#[test]
fn the_cycle_finder_sees_a_cycle() {
    let graph: BTreeMap<String, std::collections::BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let acyclic: BTreeMap<String, std::collections::BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec![])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
            .collect();
    assert!(find_cycle(&acyclic).is_none());
}
