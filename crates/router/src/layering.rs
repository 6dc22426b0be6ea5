//! The router's modules import each other without cycles: this test reads every source
//! file, collects the `crate::X` references of each top-level module, and fails on a
//! cycle, naming it. Layers then point one way: api → domain handles → cores and kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules a piece of code names as `crate::X` or `crate::{X, ..}`.
fn references(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        // Comments (docs included) do not make a dependency.
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                out.extend(group[..end].split(',').map(ident));
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// Module → the other top-level modules it references.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = weft_testkit::rust_sources(&src);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if first == "lib" || first == "layering" {
            continue;
        }
        let code = std::fs::read_to_string(&file).expect("a readable source file");
        let refs = graph.entry(first.clone()).or_default();
        refs.extend(references(&code).into_iter().filter(|m| *m != first));
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_string(), Mark::Open);
        stack.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn references_are_read_from_paths_and_groups() {
    let code = "use crate::a::B;\nuse crate::{c, d::E};\n// crate::comment\nlet x = crate::f::g();";
    let got: Vec<String> = references(code).into_iter().collect();
    assert_eq!(got, ["a", "c", "d", "f"]);
}

#[test]
fn a_cycle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    if let Some(s) = g.get_mut("c") {
        s.clear();
    }
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn the_router_modules_form_no_cycle() {
    let g = graph();
    assert!(g.len() > 10, "too few modules found: {g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "the router's modules import each other in a cycle: {}; move the shared piece \
             down a layer or pass it in from the daemon",
            cycle.join(" → ")
        );
    }
}

#[test]
fn only_the_api_knows_http_statuses() {
    let g = graph();
    for (m, refs) in &g {
        if m != "daemon" {
            assert!(
                !refs.contains("api"),
                "module {m} uses crate::api; domain code returns its own errors and the API maps them"
            );
        }
    }
}
