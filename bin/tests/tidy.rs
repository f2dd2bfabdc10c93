//! Repository hygiene checks that fail the build (ARCHITECTURE.md, "Architecture invariants",
//! names each): every Rust file starts with a `//!` line saying what it is for; no source file
//! outside tests calls `.unwrap()`; no source file has more than `MAX_LINES` lines before its
//! tests; the sans-IO crates (`oxworld-net`, `oxworld-engine`) depend on nothing that does IO;
//! and the engine never switches its `clippy.toml` bans off outside tests.

use std::fs;
use std::path::{Path, PathBuf};

/// Lines a source file may have before its `#[cfg(test)]` module: past this it holds more than
/// one job.
const MAX_LINES: usize = 800;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if !matches!(name.as_ref(), "target" | "run" | "node_modules") && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn workspace_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 10, "found the workspace's sources");
    files
}

/// Test code as a whole: integration tests, benches, and the test-only modules of a crate.
fn is_test_file(p: &Path) -> bool {
    let path = p.display().to_string();
    path.contains("/tests/")
        || path.contains("/benches/")
        || p.file_name().is_some_and(|n| n == "tests.rs" || n == "sim.rs" || n == "testserver.rs" || n == "suite.rs")
}

/// The part of a source file before its unit tests (which sit at the bottom, after
/// `#[cfg(test)]`).
fn code_part(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

fn sources() -> Vec<(PathBuf, String)> {
    workspace_files()
        .into_iter()
        .filter(|p| !is_test_file(p))
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
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
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| code_part(text).contains(".unwrap()"))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "`.unwrap()` in non-test code: {offenders:?}");
}

#[test]
fn no_source_file_holds_more_than_one_job() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| code_part(text).lines().count() > MAX_LINES)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), code_part(&text).lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines before the tests, split by job: {long:?}");
}

#[test]
fn the_engine_keeps_its_clippy_bans_outside_tests() {
    let engine = root().join("core/engine");
    assert!(engine.join("clippy.toml").exists(), "core/engine/clippy.toml bans clock, threads, sockets and files");
    // Allowed only on a test module itself: the line right after its `#[cfg(test)]`.
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(p, _)| p.starts_with(&engine))
        .flat_map(|(p, text)| {
            let lines: Vec<&str> = text.lines().collect();
            (0..lines.len())
                .filter(|&i| lines[i].contains("clippy::disallowed"))
                .filter(|&i| i == 0 || lines[i - 1].trim() != "#[cfg(test)]")
                .map(|i| format!("{}:{}", p.display(), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(offenders.is_empty(), "the engine allows a clippy.toml ban outside its tests: {offenders:?}");
}

/// The names in a manifest's `[dependencies]` section.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = fs::read_to_string(manifest).unwrap_or_default();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && let Some((name, _)) = line.split_once('=') {
            deps.push(name.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    deps
}

#[test]
fn the_sans_io_crates_depend_on_nothing_that_does_io() {
    let io = [
        "mio",
        "lmdb-rkv",
        "redis",
        "clap",
        "env_logger",
        "crossbeam-channel",
        "socket2",
        "signal-hook",
        "signal-hook-mio",
        "getrandom",
        "oxworld-runtime",
        "oxworld-host",
        "oxworld-store",
        "oxworld-client",
    ];
    for krate in ["net", "core/engine"] {
        let deps = dependencies(&root().join(krate).join("Cargo.toml"));
        assert!(deps.contains(&"log".to_owned()), "read {krate}/Cargo.toml: {deps:?}");
        let bad: Vec<&String> = deps.iter().filter(|d| io.contains(&d.as_str())).collect();
        assert!(bad.is_empty(), "{krate} is sans-IO but depends on {bad:?}");
    }
}
