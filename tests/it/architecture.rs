//! The layering ARCHITECTURE.md promises, checked on the source: no import circle between the
//! crate's top-level modules, storage never reaching up, retrieval never reaching the engine.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::root;

/// Top-level module -> the top-level modules its non-test code names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = root().join("src");
    let mut files = vec![];
    walk(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let deps = graph.entry(top.clone()).or_default();
        // `crate::x::...` and the heads of `use crate::{x::..., y}` groups.
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find("};").unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let head: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !head.is_empty() {
                        deps.insert(head);
                    }
                }
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                deps.insert(head);
            }
        }
        deps.remove(&top);
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    false
}

#[test]
fn modules_form_no_import_circle() {
    let graph = module_graph();
    assert!(graph.contains_key("engine") && graph.contains_key("storage"));
    let circles: Vec<&String> = graph.keys().filter(|m| reaches(&graph, m, m)).collect();
    assert!(
        circles.is_empty(),
        "modules in an import circle: {circles:?}\n{graph:#?}"
    );
}

#[test]
fn lower_layers_never_import_upward() {
    let graph = module_graph();
    let forbidden = [
        (
            "domain",
            &["config", "storage", "engine", "query", "api", "auth"][..],
        ),
        ("config", &["storage", "engine", "query", "api", "auth"][..]),
        (
            "storage",
            &["engine", "query", "api", "auth", "limits", "answer"][..],
        ),
        ("query", &["engine", "api", "answer"][..]),
    ];
    for (module, above) in forbidden {
        for up in above {
            assert!(
                !reaches(&graph, module, up),
                "{module} depends on {up}: {:?}",
                graph[module]
            );
        }
    }
}
