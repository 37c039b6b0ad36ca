//! A config key with extra letters in front of a known one is as far from it as those letters
//! count: past a third of its length the error lists the known keys instead of guessing.

#[test]
fn leading_extra_letters_count_as_edits() {
    let known = ["rate", "burst", "backend", "backend_options"];
    let text = |key: &str| crate::unknown_key("rate_limit", key, &known).to_string();
    assert!(
        text("xburst").contains("did you mean `burst`?"),
        "{}",
        text("xburst")
    );
    let far = text("xxxburst");
    assert!(
        far.contains("; known: rate, burst, backend, backend_options"),
        "three edits of eight letters: {far}"
    );
    assert!(!far.contains("did you mean"), "{far}");
}
