//! Compile-fail tests of the `#[secure(...)]` attribute: each case in `tests/ui/` must fail
//! with the checked-in `.stderr`. The cases use only this crate, so trybuild builds the
//! macro and its parser, not tower-secure and its dependencies (the valid forms compile
//! and run in tower-secure's own `tests/secure_valid_uses.rs`). Regenerate the `.stderr`
//! files with `TRYBUILD=overwrite cargo test -p tower-secure-macros --test ui`, then read
//! them. SPEC B5

#[test]
fn secure_attribute_refuses_invalid_uses() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
