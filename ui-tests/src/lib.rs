//! Nothing here: the compile-fail cases are in `tests/ui/`, run by `tests/diagnostics.rs`.
