//! Runs the JavaScript client's suites (`clients/js`) under `cargo test`, against this build's
//! `rollcall` binary: the unit tests (with the type check), the Node integration tests (real
//! server processes, a private `redis-server`) and the browser tests (headless Chromium).
//!
//! They need Node.js, `npm ci` in `clients/js`, and `/usr/bin/chromium` (`apt-get install
//! chromium`); `scripts/test` installs what is missing. When something is missing these tests fail
//! and say what to do: they never skip. On failure the npm output is printed.
//!
//! The three suites run one at a time (a lock), so that their timing bounds hold on a loaded
//! machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// Fails with what to install when a prerequisite of the suites is absent.
fn check_prerequisites(needs_chromium: bool) {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => panic!("`node` is not on PATH: install Node.js 20 or later (with npm)"),
    }
    if !js_dir().join("node_modules").is_dir() {
        panic!(
            "clients/js/node_modules is missing: run `npm ci` in clients/js (or run `scripts/test`)"
        );
    }
    if needs_chromium && !Path::new("/usr/bin/chromium").exists() {
        panic!("/usr/bin/chromium is missing: apt-get install chromium (or run `scripts/test`)");
    }
}

/// `npm run <script>` in clients/js with this build's binary; panics with its output on failure.
fn npm_run(script: &str, needs_chromium: bool) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    check_prerequisites(needs_chromium);
    let started = Instant::now();
    let output = Command::new("npm")
        .args(["run", "--silent", script])
        .current_dir(js_dir())
        .env("ROLLCALL_BIN", env!("CARGO_BIN_EXE_rollcall"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("could not run `npm run {script}` (is npm installed?): {e}"));
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# tests") || l.starts_with("# pass") || l.starts_with("# fail"))
        .collect();
    eprintln!(
        "npm run {script}: {} in {:.1} s",
        summary.join(", "),
        elapsed.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "`npm run {script}` in clients/js failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
}

#[test]
fn js_unit_tests_and_type_check() {
    npm_run("test:unit", false);
}

#[test]
fn js_node_integration_tests_against_the_real_binary() {
    npm_run("test:node", false);
}

#[test]
fn js_browser_tests_in_headless_chromium() {
    npm_run("test:browser", true);
}
