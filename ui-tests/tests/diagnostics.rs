//! Compile-fail proofs of the error messages for common misuse (`tests/ui/*.rs`, with the
//! compiler's output in the `.stderr` beside each). Run with `TRYBUILD=overwrite` to accept
//! a new compiler's wording after reading it.

#[test]
fn misuse_gets_a_message_that_names_the_fix() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
