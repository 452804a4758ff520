//! Start-up refuses liveness settings that do not work together (`rollcall::liveness`), and a
//! webhook URL without its secret: the binary exits non-zero with one message naming both
//! settings, before it opens anything.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a loaded machine to start the process; a server that did start (the check
/// missing) would run until killed.
const EXIT_BOUND: Duration = Duration::from_secs(30);

/// Runs the binary with `flags` and `env`, on a throw-away database, and returns its output once it
/// exits; kills it and fails if it is still running after [`EXIT_BOUND`].
fn run(flags: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("rollcall.db");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollcall"));
    command
        .args(["--bind", "127.0.0.1:0"])
        .args(flags)
        .env("DATABASE_URL", format!("sqlite://{}", database.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "REDIS_URL",
        "ROLLCALL_REDIS_CLUSTER_URLS",
        "ROLLCALL_HEARTBEAT_MS",
        "ROLLCALL_LEASE_MS",
        "ROLLCALL_CLIENT_PING_MS",
        "ROLLCALL_CLIENT_TIMEOUT_MS",
        "ROLLCALL_WEBHOOK_URL",
        "ROLLCALL_WEBHOOK_SECRET",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("spawn the rollcall binary");
    let started = Instant::now();
    while child.try_wait().expect("poll the process").is_none() {
        if started.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect the output");
            panic!(
                "rollcall {flags:?} {env:?} was still running after {EXIT_BOUND:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect the output");
    assert!(!database.exists(), "the database was opened");
    output
}

fn assert_refused(output: &Output, parts: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exited with {}; stderr:\n{stderr}",
        output.status
    );
    for part in parts {
        assert!(stderr.contains(part), "{part:?} not in stderr:\n{stderr}");
    }
    assert_eq!(
        stderr.matches(parts[0]).count(),
        1,
        "the message is printed once:\n{stderr}"
    );
}

#[test]
fn a_heartbeat_as_long_as_the_lease_stops_the_start_naming_both_flags() {
    let output = run(&["--heartbeat-ms", "3000", "--lease-ms", "3000"], &[]);
    assert_refused(
        &output,
        &[
            "--heartbeat-ms (ROLLCALL_HEARTBEAT_MS) = 3000",
            "--lease-ms (ROLLCALL_LEASE_MS) = 3000",
            "invalid configuration",
        ],
    );
}

#[test]
fn a_client_ping_as_long_as_the_timeout_stops_the_start_from_the_environment_too() {
    let output = run(
        &[],
        &[
            ("ROLLCALL_CLIENT_PING_MS", "20000"),
            ("ROLLCALL_CLIENT_TIMEOUT_MS", "20000"),
        ],
    );
    assert_refused(
        &output,
        &[
            "--client-ping-ms (ROLLCALL_CLIENT_PING_MS) = 20000",
            "--client-timeout-ms (ROLLCALL_CLIENT_TIMEOUT_MS) = 20000",
        ],
    );
}

#[test]
fn a_webhook_url_without_a_secret_stops_the_start_naming_both() {
    let output = run(&[], &[("ROLLCALL_WEBHOOK_URL", "http://127.0.0.1:9/hooks")]);
    assert_refused(
        &output,
        &[
            "--webhook-url (ROLLCALL_WEBHOOK_URL) needs --webhook-secret (ROLLCALL_WEBHOOK_SECRET)",
            "invalid configuration",
        ],
    );
}
