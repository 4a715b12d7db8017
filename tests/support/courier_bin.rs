//! The `courier` binary for black-box tests of crates other than courier-cli (which uses
//! `CARGO_BIN_EXE_courier`): `$COURIER_BIN`, else `<target>/<profile>/courier` next to the
//! test binary, built once with `cargo build -p courier-cli --bin courier` if it is missing.
//! Included with `#[path]` by courier-verify's and courier-toolkit's tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `courier` binary, built once if it does not exist.
pub fn courier_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("COURIER_BIN") {
            return PathBuf::from(bin);
        }
        // …/target/debug/deps/<test>-<hash> → …/target/debug/courier
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary in <target>/<profile>/deps");
        let bin = profile_dir.join("courier");
        if !bin.exists() {
            let target_dir = profile_dir.parent().expect("target dir");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.args(["build", "-p", "courier-cli", "--bin", "courier"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build of courier failed: {status}");
        }
        bin
    })
    .clone()
}
