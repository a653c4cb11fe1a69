//! The layers of `plugin/src` hold: nothing below imports from above.
//!
//! `cli` and `cmd` are the edge (flags, exit codes, the verbs' stories); `webhook` is the
//! admission server, built on the engine's parts; `release` is the engine; `cluster`, `hooks` and `artifacts` are the gateways to the outside world; `config`
//! and `domain` are plain data and pure decisions; `output` and `progress` are leaves.

use std::path::Path;

/// Layer of each top-level module; a module may import only from lower layers (or itself).
const LAYERS: [(&str, u8); 11] = [
    ("cli", 6),
    ("cmd", 6),
    ("webhook", 5),
    ("release", 4),
    ("cluster", 3),
    ("hooks", 3),
    ("artifacts", 3),
    ("config", 2),
    ("domain", 1),
    ("output", 0),
    ("progress", 0),
];

/// `cli` and `cmd`: the one layer whose modules use each other.
const EDGE: u8 = 6;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Every `crate::<module>` a file names, with its line.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            found.push((n + 1, name));
        }
    }
    found
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn nothing_below_imports_from_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&top) else {
            continue; // lib.rs, main.rs
        };
        for (line, module) in imports(&std::fs::read_to_string(file).unwrap()) {
            if module == top {
                continue;
            }
            // The edge is one layer: a verb reads its parsed flags and exits with its code.
            if let Some(theirs) = layer(&module)
                && (theirs > own || (theirs == own && own != EDGE))
            {
                wrong.push(format!(
                    "{}:{line}: {top} imports {module}",
                    relative.display()
                ));
            }
        }
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
