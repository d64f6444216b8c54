//! Compile-fail tests of the `#[secure(...)]` attribute (SPEC B5): each case in `tests/ui/`
//! must fail with the checked-in `.stderr`, and the cases in `tests/ui/pass/` must compile
//! and run. Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test --test secure_macro_ui`, then read them.

#[test]
fn secure_attribute_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/*.rs");
}
