//! The liveness settings, checked together once at start-up.
//!
//! Each of `--heartbeat-ms`, `--lease-ms`, `--client-ping-ms` and `--client-timeout-ms` is valid
//! alone (clap checks its range), but they only work in pairs, and a wrong pair starts and serves
//! while it quietly breaks the promise the pair exists for. [`Liveness::from_args`] refuses such a
//! pair with a [`LivenessError`] that names both settings, by flag and environment variable, with
//! their values and what to change; `rollcall::server::start` calls it before it opens anything.
//!
//! The rules, from docs/architecture.md:
//!
//! - **`--heartbeat-ms` ≤ `--lease-ms` / 2.** Every tick renews the lease to *now + lease* and then
//!   reaps every instance whose lease has expired (§5.3, §5.4). A tick still running when the next
//!   one is due makes that one skip, and a Redis operation may take up to
//!   [`crate::store::redis::OPERATION_TIMEOUT`] (2 s) before it gives up, so a renewal can come
//!   late; if it lands after the lease ran out, another instance's tick reaps this instance's live
//!   members (`instance_lost`; they return by re-assertion at the next renewal: §4.7, "instances
//!   may reap each other's members" once renewals stall beyond lease − heartbeat). With heartbeat =
//!   lease, lease − heartbeat is zero: every renewal lands at the moment of expiry, and instances
//!   reap each other in normal operation. Requiring lease − heartbeat ≥ heartbeat lets a renewal be
//!   up to one heartbeat late (a slow round trip, a tick that ran long) and still hold the lease.
//!   At exactly half, the renewal after a tick skipped outright lands at the expiry; the defaults
//!   (1000 / 3000) leave 2 s, two ticks or one full Redis operation timeout. The rule does not demand that much, so
//!   short leases for tests (heartbeat 200, lease 1000) stay valid.
//! - **`--client-ping-ms` ≤ `--client-timeout-ms` / 2.** A client is closed when its silence (no
//!   frame at all, pongs included) reaches the timeout (§2.1; protocol.md §1.10: "a client whose
//!   WebSocket library answers pings is never timed out"). With ping ≥ timeout, an idle client that
//!   only answers pings is closed before its first pong can arrive. With ping ≤ timeout / 2, at
//!   least two pings go out within any timeout window, so a client is closed only if it misses one
//!   ping and also leaves the next unanswered, rather than for one ping or pong lost on the way. At
//!   exactly half the next pong has little time to spare; the defaults (5000 / 15000) send three
//!   pings per timeout.
//!
//! Nothing else is checked: the docs warn about no other combination (none about
//! `--shutdown-timeout-ms` or `--counts-interval-ms` against these), and the one other warning, a
//! lease longer than a Redis Cluster failover plus a heartbeat (README, architecture §4.7),
//! depends on the cluster, which start-up cannot measure.

use std::time::Duration;

use crate::config::ServeArgs;

/// The four liveness settings of an instance, known to work together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    heartbeat: Duration,
    lease: Duration,
    client_ping: Duration,
    client_timeout: Duration,
}

/// A pair of liveness settings that does not work together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LivenessError {
    #[error(
        "--heartbeat-ms (ROLLCALL_HEARTBEAT_MS) = {heartbeat_ms} must be at most half of \
         --lease-ms (ROLLCALL_LEASE_MS) = {lease_ms}, so that a lease renewal can come up to \
         one heartbeat late without other instances reaping this instance's members: lower \
         --heartbeat-ms to {} or less, or raise --lease-ms to {} or more",
        lease_ms / 2,
        heartbeat_ms.saturating_mul(2)
    )]
    HeartbeatTooLongForLease { heartbeat_ms: u64, lease_ms: u64 },
    #[error(
        "--client-ping-ms (ROLLCALL_CLIENT_PING_MS) = {client_ping_ms} must be at most half of \
         --client-timeout-ms (ROLLCALL_CLIENT_TIMEOUT_MS) = {client_timeout_ms}, so that one lost \
         ping or pong does not alone close a live client: lower --client-ping-ms to {} or less, \
         or raise --client-timeout-ms to {} or more",
        client_timeout_ms / 2,
        client_ping_ms.saturating_mul(2)
    )]
    ClientPingTooLongForTimeout {
        client_ping_ms: u64,
        client_timeout_ms: u64,
    },
}

impl Liveness {
    /// The liveness settings of `args`, or the first pair of them that does not work together.
    pub fn from_args(args: &ServeArgs) -> Result<Liveness, LivenessError> {
        let (heartbeat_ms, lease_ms) = (args.heartbeat_ms, args.lease_ms);
        // For integers, h ≤ ⌊l / 2⌋ ⟺ 2h ≤ l: exactly "at most half", without overflow.
        if heartbeat_ms > lease_ms / 2 {
            return Err(LivenessError::HeartbeatTooLongForLease {
                heartbeat_ms,
                lease_ms,
            });
        }
        let (client_ping_ms, client_timeout_ms) = (args.client_ping_ms, args.client_timeout_ms);
        if client_ping_ms > client_timeout_ms / 2 {
            return Err(LivenessError::ClientPingTooLongForTimeout {
                client_ping_ms,
                client_timeout_ms,
            });
        }
        Ok(Liveness {
            heartbeat: Duration::from_millis(heartbeat_ms),
            lease: Duration::from_millis(lease_ms),
            client_ping: Duration::from_millis(client_ping_ms),
            client_timeout: Duration::from_millis(client_timeout_ms),
        })
    }

    /// Lease renewal and reaper tick (`--heartbeat-ms`).
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long an instance that stops renewing stays alive to the others (`--lease-ms`).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Interval of WebSocket pings to clients (`--client-ping-ms`).
    pub fn client_ping(&self) -> Duration {
        self.client_ping
    }

    /// Silence after which a client is closed (`--client-timeout-ms`).
    pub fn client_timeout(&self) -> Duration {
        self.client_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    fn parse(flags: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("rollcall").chain(flags.iter().copied()))
            .expect("valid flags")
            .serve
    }

    fn check(flags: &[&str]) -> Result<Liveness, LivenessError> {
        Liveness::from_args(&parse(flags))
    }

    #[test]
    fn the_defaults_pass() {
        let liveness = Liveness::from_args(&ServeArgs::defaults()).expect("the defaults are valid");
        assert_eq!(liveness.heartbeat(), Duration::from_millis(1000));
        assert_eq!(liveness.lease(), Duration::from_millis(3000));
        assert_eq!(liveness.client_ping(), Duration::from_millis(5000));
        assert_eq!(liveness.client_timeout(), Duration::from_millis(15000));
    }

    #[test]
    fn a_heartbeat_equal_to_the_lease_fails_naming_both_flags_and_variables() {
        let err = check(&["--heartbeat-ms", "3000", "--lease-ms", "3000"]).unwrap_err();
        assert_eq!(
            err,
            LivenessError::HeartbeatTooLongForLease {
                heartbeat_ms: 3000,
                lease_ms: 3000
            }
        );
        let message = err.to_string();
        for part in [
            "--heartbeat-ms (ROLLCALL_HEARTBEAT_MS) = 3000",
            "--lease-ms (ROLLCALL_LEASE_MS) = 3000",
            "lower --heartbeat-ms to 1500 or less",
            "raise --lease-ms to 6000 or more",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
    }

    #[test]
    fn a_heartbeat_above_the_lease_fails() {
        let err = check(&["--heartbeat-ms", "5000"]).unwrap_err();
        assert!(
            matches!(
                err,
                LivenessError::HeartbeatTooLongForLease {
                    heartbeat_ms: 5000,
                    lease_ms: 3000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_heartbeat_may_be_exactly_half_the_lease() {
        assert!(check(&["--heartbeat-ms", "1500", "--lease-ms", "3000"]).is_ok());
        assert!(check(&["--heartbeat-ms", "1501", "--lease-ms", "3000"]).is_err());
        // An odd lease: half of 3001 ms is 1500.5 ms, so 1500 passes and 1501 does not.
        assert!(check(&["--heartbeat-ms", "1500", "--lease-ms", "3001"]).is_ok());
        assert!(check(&["--heartbeat-ms", "1501", "--lease-ms", "3001"]).is_err());
        // The smallest values the flags accept.
        assert!(check(&["--heartbeat-ms", "10", "--lease-ms", "20"]).is_ok());
        assert!(check(&["--heartbeat-ms", "11", "--lease-ms", "20"]).is_err());
    }

    #[test]
    fn a_client_ping_equal_to_the_timeout_fails_naming_both_flags_and_variables() {
        let err = check(&["--client-ping-ms", "15000"]).unwrap_err();
        assert_eq!(
            err,
            LivenessError::ClientPingTooLongForTimeout {
                client_ping_ms: 15000,
                client_timeout_ms: 15000
            }
        );
        let message = err.to_string();
        for part in [
            "--client-ping-ms (ROLLCALL_CLIENT_PING_MS) = 15000",
            "--client-timeout-ms (ROLLCALL_CLIENT_TIMEOUT_MS) = 15000",
            "lower --client-ping-ms to 7500 or less",
            "raise --client-timeout-ms to 30000 or more",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
    }

    #[test]
    fn a_client_ping_above_the_timeout_fails() {
        let err = check(&["--client-ping-ms", "5000", "--client-timeout-ms", "4000"]).unwrap_err();
        assert!(
            matches!(err, LivenessError::ClientPingTooLongForTimeout { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_client_ping_may_be_exactly_half_the_timeout() {
        assert!(check(&["--client-ping-ms", "7500"]).is_ok());
        assert!(check(&["--client-ping-ms", "7501"]).is_err());
        assert!(check(&["--client-ping-ms", "7500", "--client-timeout-ms", "15001"]).is_ok());
        assert!(check(&["--client-ping-ms", "7501", "--client-timeout-ms", "15001"]).is_err());
        assert!(check(&["--client-ping-ms", "10", "--client-timeout-ms", "20"]).is_ok());
        assert!(check(&["--client-ping-ms", "11", "--client-timeout-ms", "20"]).is_err());
    }

    #[test]
    fn the_heartbeat_is_checked_before_the_client_ping() {
        let err = check(&["--heartbeat-ms", "3000", "--client-ping-ms", "15000"]).unwrap_err();
        assert!(
            matches!(err, LivenessError::HeartbeatTooLongForLease { .. }),
            "{err}"
        );
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let max = u64::MAX.to_string();
        assert!(check(&["--heartbeat-ms", &max, "--lease-ms", &max]).is_err());
        assert!(check(&["--client-ping-ms", &max, "--client-timeout-ms", &max]).is_err());
        let err = check(&["--heartbeat-ms", &max]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("raise --lease-ms to {max} or more")),
            "{err}"
        );
    }

    #[test]
    fn the_settings_the_test_suites_start_servers_with_pass() {
        for flags in [
            // tests/it/multi_instance.rs and multi_instance/cluster.rs
            &["--heartbeat-ms", "200", "--lease-ms", "1000"][..],
            // tests/it/ws_protocol.rs (store reset)
            &["--heartbeat-ms", "50"],
            // tests/it/no_ghosts.rs
            &["--lease-ms", "60000"],
            // tests/it/ws_lifecycle.rs (client timeout)
            &["--client-ping-ms", "100", "--client-timeout-ms", "800"],
            // tests/it/ws_protocol.rs (welcome)
            &["--client-ping-ms", "1234"],
            // tests/metrics.rs
            &["--client-ping-ms", "60000", "--client-timeout-ms", "120000"],
            // clients/js/test/node/multi_instance.test.js
            &["--heartbeat-ms", "500", "--lease-ms", "2000"],
            // clients/js/test/node/dead_server.test.js
            &["--client-ping-ms", "300"],
        ] {
            assert!(
                check(flags).is_ok(),
                "{flags:?}: {}",
                check(flags).unwrap_err()
            );
        }
    }
}
