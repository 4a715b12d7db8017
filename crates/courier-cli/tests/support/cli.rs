//! Runs the `courier` binary against a broker, as an operator would.

use std::process::Command;

/// Runs `courier ARGS` with `COURIER_BOOTSTRAP=bootstrap`: (success, stdout, stderr).
pub fn courier(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .env("COURIER_BOOTSTRAP", bootstrap)
        .output()
        .expect("run courier");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `courier ARGS`, asserts it succeeded, and returns its stdout.
pub fn ok(bootstrap: &str, args: &[&str]) -> String {
    let (success, out, err) = courier(bootstrap, args);
    assert!(success, "courier {args:?} failed:\n{out}\n{err}");
    out
}
