//! Every attribute mistake is a compile error at the attribute, with the expected message
//! checked in next to the case (tests/ui/*.stderr; regenerate with `TRYBUILD=overwrite`).

#[test]
fn bad_attributes_are_compile_errors_pointing_at_them() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/unknown_key.rs");
    cases.compile_fail("ui/bad_values.rs");
    cases.compile_fail("ui/bad_functions.rs");
}
