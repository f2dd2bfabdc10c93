//! Repository hygiene checks that fail the build: every Rust file starts with a `//!` line
//! saying what it is for, and no source file outside tests calls `.unwrap()`.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if !matches!(name.as_ref(), "target" | "run" | ".git") && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "found the workspace's sources");
    files
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<String> = workspace_files()
        .into_iter()
        .filter(|p| !fs::read_to_string(p).map(|s| s.trim_start().starts_with("//!")).unwrap_or(false))
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:?}");
}

#[test]
fn no_unwrap_outside_tests() {
    let mut offenders = Vec::new();
    for p in workspace_files() {
        let path = p.display().to_string();
        if path.contains("/tests/") || path.contains("/benches/") {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap_or_default();
        // Unit tests live at the bottom of a module, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        if code.contains(".unwrap()") {
            offenders.push(path);
        }
    }
    assert!(offenders.is_empty(), "`.unwrap()` in non-test code: {offenders:?}");
}
