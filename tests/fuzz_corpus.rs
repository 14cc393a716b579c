//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the checks the fuzz
//! targets run (`fuzz/checks.rs`), on stable, in every test run: what fuzzing found keeps
//! being tested. The corpora are what `cargo fuzz cmin` kept after the runs described in
//! `fuzz/README.md`, plus the hand-written seeds.

use crate::checks;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus for {target}");
}

#[test]
fn entity_tags() {
    replay("etag", checks::etag);
}

#[test]
fn cache_control() {
    replay("cache_control", checks::cache_control);
}

#[test]
fn dates() {
    replay("dates", checks::dates);
}

#[test]
fn vary() {
    replay("vary", checks::vary);
}

#[test]
fn request_heads() {
    replay("request_head", checks::request_head);
}

#[test]
fn targeted_cache_control() {
    replay("targeted", checks::targeted);
}

#[test]
fn ranges() {
    replay("range", checks::range);
}
