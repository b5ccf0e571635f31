//! The gateway's rooms stay apart (see lib.rs): the `use`s between its source files form no
//! loop, the edge names neither the routes nor the shared state, and the JSON mapping names
//! no room above it (but for the OpenAPI document, which reads the route table).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use regex::Regex;

/// Module path (`edge::auth`; empty for lib.rs) -> source, for every file under `src/`.
fn sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            match parts.as_slice() {
                [only] if only == "main" => continue,
                [only] if only == "lib" => parts.clear(),
                _ => {}
            }
            out.insert(parts.join("::"), fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let (Some(open), Some(close)) = (tree.find('{'), tree.rfind('}')) else {
        return vec![tree.to_string()];
    };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..close]);
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(|item| expand(item).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// The module a `crate::`/`super::`/`self::` path names, seen from `here`.
fn resolve(path: &str, here: &[String], known: &BTreeSet<String>) -> Option<String> {
    let mut segs = path
        .split("::")
        .map(|s| s.split(" as ").next().unwrap_or(s).trim());
    let mut full: Vec<String> = match segs.next()? {
        "crate" | "$crate" => Vec::new(),
        first @ ("super" | "self") => {
            let mut base = here.to_vec();
            let mut seg = Some(first);
            while let Some(s @ ("super" | "self")) = seg {
                if s == "super" {
                    base.pop();
                }
                seg = segs.next();
            }
            base.extend(seg.map(str::to_string));
            base
        }
        _ => return None,
    };
    full.extend(segs.map(str::to_string));
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains(m))
}

/// Module -> the modules it names (its tests included).
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    let comment = Regex::new(r"//[^\n]*").unwrap();
    let use_item = Regex::new(r"\buse\s+((?:\$?crate|super|self)\b[^;]*);").unwrap();
    let inline = Regex::new(r"(^|[^\w:])((?:\$?crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let mut graph = BTreeMap::new();
    for (module, source) in &sources {
        let here: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let source = comment.replace_all(source, "");
        let split = source.find("mod tests {").unwrap_or(source.len());
        let in_tests: Vec<String> = here.iter().cloned().chain(["tests".to_string()]).collect();
        let mut deps = BTreeSet::new();
        for (chunk, at) in [(&source[..split], &here), (&source[split..], &in_tests)] {
            for u in use_item.captures_iter(chunk) {
                deps.extend(expand(&u[1]).iter().filter_map(|p| resolve(p, at, &known)));
            }
            let rest = use_item.replace_all(chunk, "");
            deps.extend(
                inline
                    .captures_iter(&rest)
                    .filter_map(|c| resolve(&c[2], at, &known)),
            );
        }
        deps.remove(module);
        graph.insert(module.clone(), deps);
    }
    graph
}

fn room(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn no_module_names_itself_back() {
    let graph = uses();
    assert!(graph.contains_key("edge::auth") && graph["routes::router"].contains("edge::auth"));
    // Depth-first: a module met again while still on the path closes a loop.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("module loop: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m);
        for d in &graph[m] {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_edge_and_the_mapping_stay_below_the_routes() {
    for (module, deps) in uses() {
        let above: &[&str] = match room(&module) {
            "edge" => &["state", "routes"],
            "mapping" => &["state", "routes", "edge"],
            _ => continue,
        };
        for d in deps {
            assert!(!above.contains(&room(&d)), "{module} names {d}");
        }
    }
}
