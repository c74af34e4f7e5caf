//! The vendored ezk crates must be exactly the published crates plus the patch series in
//! `vendor/patches/` (see `vendor/README.md`): `bash vendor/apply.sh --check` rebuilds
//! "published + patches" and compares it with `vendor/ezk-sip-core`, `vendor/ezk-sip-ua` and
//! `vendor/ezk-sip-types`.
//!
//! No skipping: a missing `bash`, `patch` or `diff` (or, on a machine whose cargo registry does
//! not hold the crates yet, an unreachable crates.io) fails the test.

use std::process::Command;

#[test]
fn vendored_ezk_is_published_plus_patch_series() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("bash")
        .args(["vendor/apply.sh", "--check"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `bash vendor/apply.sh --check` in {root}: {e}"));

    assert!(
        output.status.success(),
        "`bash vendor/apply.sh --check` failed ({}): vendor/ezk-sip-* drifted from the published \
         crates + vendor/patches, a patch does not apply exactly, or a tool is missing. Regenerate \
         the patch as vendor/README.md describes.\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
