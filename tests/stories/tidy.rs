//! The invariants of docs/ARCHITECTURE.md marked "(checked)", read from the
//! source (rust-analyzer's `tidy.rs` is the model): a change that breaks one
//! fails here with the file and line, instead of waiting for a reviewer.

use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, relative to the repository.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(path: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo().join(dir), &mut found);
    found.sort();
    found.into_iter().map(|p| p.strip_prefix(repo()).expect("inside the repository").to_owned()).collect()
}

/// The code lines of a file (comments dropped), numbered from 1. Unit-test
/// modules at the end of a file (`#[cfg(test)]`) are dropped too: tests may
/// do what the code may not.
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(repo().join(file)).expect("readable source");
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start() == "#[cfg(test)]" {
            break;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal (a URL) is code; good enough for these patterns.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        if !code.trim().is_empty() {
            lines.push((index + 1, code.to_owned()));
        }
    }
    lines
}

/// Lines of the files under `dir` that contain any of `patterns`, as "file:line: text".
fn offending(dir: &str, patterns: &[&str], except: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(dir) {
        let name = file.to_string_lossy().replace('\\', "/");
        if except.iter().any(|allowed| name.starts_with(allowed)) {
            continue;
        }
        for (number, line) in code_lines(&file) {
            if patterns.iter().any(|pattern| line.contains(pattern)) {
                found.push(format!("{name}:{number}: {}", line.trim()));
            }
        }
    }
    found
}

fn assert_none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

#[test]
fn the_domain_does_no_io_and_depends_on_no_other_room() {
    assert_none(
        "src/domain must stay pure (docs/ARCHITECTURE.md)",
        offending(
            "src/domain",
            &[
                "async fn",
                ".await",
                "sea_orm",
                "tokio",
                "tonic",
                "axum",
                "std::fs",
                "std::net::TcpStream",
                "std::process",
                "now_utc()",
                "SystemTime",
                "rand::",
                "crate::app",
                "crate::store",
                "crate::grpc",
                "crate::gateway",
                "crate::mail",
                "crate::crypto",
                "crate::telemetry",
                "crate::server",
            ],
            &[],
        ),
    );
}

#[test]
fn data_flows_one_way() {
    assert_none(
        "src/store must not reach back into use cases or edges",
        offending("src/store", &["crate::app", "crate::grpc", "crate::gateway", "crate::server"], &[]),
    );
    assert_none(
        "src/app must not reach the edges",
        offending("src/app", &["crate::grpc", "crate::gateway", "crate::server"], &[]),
    );
}

#[test]
fn sql_lives_only_in_the_store() {
    assert_none(
        "SQL outside src/store (docs/ARCHITECTURE.md)",
        offending(
            "src",
            &[
                "\"SELECT ",
                "\"UPDATE ",
                "\"INSERT INTO",
                "\"DELETE FROM",
                "execute_unprepared",
                "Statement::from_",
                "query_all(",
                "query_one(",
            ],
            &["src/store/"],
        ),
    );
}

#[test]
fn the_gateway_holds_no_domain_logic() {
    assert_none(
        "src/gateway reaches the service only through its gRPC clients",
        offending(
            "src/gateway",
            &["crate::app", "crate::store", "domain::permissions", "domain::governance", "domain::status"],
            &[],
        ),
    );
}

#[test]
fn time_comes_from_the_injectable_clock() {
    assert_none(
        "read the time through the Clock (src/clock.rs), never directly",
        offending("src", &["now_utc()", "SystemTime::now()", "Utc::now()"], &["src/clock.rs"]),
    );
}

#[test]
fn every_crate_root_forbids_unsafe() {
    let roots = [
        "src/lib.rs",
        "src/main.rs",
        "crates/bench/src/lib.rs",
        "crates/bench/src/main.rs",
        "crates/client/src/lib.rs",
        "tests/stories/main.rs",
    ];
    for root in roots {
        let text = std::fs::read_to_string(repo().join(root)).expect("a crate root");
        assert!(text.contains("#![forbid(unsafe_code)]"), "{root} must forbid unsafe code");
    }
    assert_none("no unsafe code", offending("src", &["unsafe {", "unsafe fn", "unsafe impl"], &[]));
}

#[test]
fn stories_live_in_the_one_test_binary() {
    let top_level: Vec<String> = std::fs::read_dir(repo().join("tests"))
        .expect("tests/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        top_level.is_empty(),
        "each file directly under tests/ is a test binary that links the whole service again: \
         make it a module of tests/stories/ instead: {top_level:?}"
    );
    let main = std::fs::read_to_string(repo().join("tests/stories/main.rs")).expect("tests/stories/main.rs");
    for file in rust_files("tests/stories") {
        let Some(name) = file.file_stem().and_then(|s| s.to_str()) else { continue };
        if file.parent() == Some(Path::new("tests/stories")) && name != "main" {
            assert!(
                main.contains(&format!("mod {name};")),
                "{} is not a module of tests/stories/main.rs",
                file.display()
            );
        }
    }
}
