//! `/metrics` (docs/protocol.md §2.6, issue 6): the text parses as the Prometheus exposition format under a
//! strict parser, and the counters and gauges move exactly with the traffic the test sends.
//!
//! The recorder is process-global (one per test binary), so every assertion is on a delta between
//! two scrapes, and the tests of this file run one at a time (a static lock): nothing else in this
//! binary moves a counter between two scrapes.
//!
//! A test binary of its own: the metrics recorder is process-global, and these tests assert exact
//! deltas, which the servers of other tests running in parallel would move.

#[path = "it/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::db::token;
use support::server::{TestServer, WAIT, http_get_text, test_args};
use support::ws::WsClient;
use tokio::time::Instant;

/// Serializes the tests of this binary (the recorder is shared).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECRET: &str = "metrics-test-secret";

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text format (version 0.0.4).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → type.
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    /// `name{k="v",…}` with labels sorted → value.
    samples: BTreeMap<String, f64>,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("not a number: {text:?}")),
    }
}

/// `{k="v",…}` → sorted pairs; the escapes `\\`, `\"`, `\n` only.
fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {rest:?}"))?;
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {text:?}")),
            }
        };
        if labels.iter().any(|(n, _): &(String, String)| n == name) {
            return Err(format!("duplicate label {name:?}"));
        }
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else if !rest.is_empty() {
            return Err(format!("junk after a label value: {rest:?}"));
        }
    }
    labels.sort();
    Ok(labels)
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// The family a sample belongs to: its own name, or a histogram's/summary's base name.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            types.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then_some(base)
    })
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_help)) if valid_metric_name(name) => {
                    if !out.helps.insert(name.to_owned()) {
                        return Err(at("second HELP for one family".into()));
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) if valid_metric_name(name) => {
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at(format!("unknown type {kind:?}")));
                    }
                    let earlier = out.samples.keys().any(|k| {
                        family_of(k.split('{').next().unwrap_or(k), &out.types) == Some(name)
                    });
                    if earlier || out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at("TYPE after samples, or a second TYPE".into()));
                    }
                }
                _ => return Err(at("a comment that is neither HELP nor TYPE".into())),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value".into()))?;
        // An optional timestamp would be a third field; this exporter writes none.
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| at("unclosed labels".into()))?;
                (name, parse_labels(inner).map_err(at)?)
            }
            None => (series, Vec::new()),
        };
        if !valid_metric_name(name) {
            return Err(at(format!("invalid metric name {name:?}")));
        }
        let value = parse_value(value).map_err(at)?;
        if family_of(name, &out.types).is_none() {
            return Err(at("a sample without a TYPE line before it".into()));
        }
        if out.samples.insert(key(name, &labels), value).is_some() {
            return Err(at("a duplicate series".into()));
        }
    }
    check_histograms(&out)?;
    Ok(out)
}

/// Every histogram series: buckets with `le`, non-decreasing, ending in `+Inf` equal to `_count`.
fn check_histograms(exp: &Exposition) -> Result<(), String> {
    for (family, kind) in &exp.types {
        if kind != "histogram" {
            continue;
        }
        let prefix = format!("{family}_bucket");
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (k, v) in &exp.samples {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let labels = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("a bucket without labels: {k}"))?;
            let labels = parse_labels(labels)?;
            let le = labels
                .iter()
                .find(|(n, _)| n == "le")
                .ok_or_else(|| format!("a bucket without le: {k}"))?;
            let bound = parse_value(&le.1)?;
            let others: Vec<_> = labels.iter().filter(|(n, _)| n != "le").cloned().collect();
            series
                .entry(key(family, &others))
                .or_default()
                .push((bound, *v));
        }
        for (id, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{id}: bucket counts decrease: {buckets:?}"));
            }
            let last = buckets.last().expect("at least one bucket");
            let labels = id.strip_prefix(family.as_str()).unwrap_or_default();
            let count = exp.samples.get(&format!("{family}_count{labels}"));
            if last.0 != f64::INFINITY || count != Some(&last.1) {
                return Err(format!("{id}: +Inf bucket {last:?} vs _count {count:?}"));
            }
            if !exp.samples.contains_key(&format!("{family}_sum{labels}")) {
                return Err(format!("{id}: no _sum"));
            }
        }
    }
    Ok(())
}

impl Exposition {
    /// The value of one series (0 when the series has not appeared yet).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.samples
            .get(&key(name, &labels))
            .copied()
            .unwrap_or(0.0)
    }
}

/// `GET /metrics` as raw text, checking the status and the content type.
async fn scrape(addr: SocketAddr) -> Exposition {
    let (status, content_type, body) = http_get_text(addr, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    parse_exposition(&body)
        .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{body}"))
}

/// Waits (bounded) until `pred` holds for a fresh scrape; returns that scrape.
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + WAIT;
    loop {
        let exp = scrape(addr).await;
        if pred(&exp) {
            return exp;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics did not show {what} within {WAIT:?}: {:#?}",
            exp.samples
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_strict_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total An a.\n# TYPE a_total counter\na_total{code=\"x\\\"y\"} 3\n\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let exp = parse_exposition(ok).expect("valid text");
    assert_eq!(exp.get("a_total", &[("code", "x\"y")]), 3.0);
    for bad in [
        "a_total 1\n",                             // no TYPE
        "# TYPE a counter\na 1",                   // no final newline
        "# TYPE a counter\na one\n",               // not a number
        "# TYPE a counter\na{b=\"c\" 1\n",         // unclosed labels
        "# TYPE a counter\na{1b=\"c\"} 1\n",       // label name
        "# TYPE 1a counter\n1a 1\n",               // metric name
        "# TYPE a counter\na 1\na 2\n",            // duplicate series
        "# TYPE a counter\n# TYPE a gauge\na 1\n", // second TYPE
        "# TYPE a countr\na 1\n",                  // unknown type
        "# random comment\n",                      // stray comment
        "# TYPE a counter\na{b=\"\\x\"} 1\n",      // bad escape
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // decreasing
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", // +Inf ≠ count
    ] {
        assert!(parse_exposition(bad).is_err(), "should be refused: {bad:?}");
    }
}

#[actix_rt::test]
async fn metrics_parse_as_prometheus_text_and_move_exactly_with_the_traffic() {
    let _serial = SERIAL.lock().await;
    let mut args = test_args();
    args.jwt_secret = Some(SECRET.to_owned());
    args.client_ping_ms = 60_000; // no WebSocket pings in the measured windows
    args.client_timeout_ms = 120_000;
    let server = TestServer::start(args).await;
    let url = server.ws_url();

    // Every family our code describes has HELP and TYPE once it has a sample.
    let start = scrape(server.addr).await;

    // --- connections ---
    let mut alice =
        WsClient::connect(&format!("{url}?token={}", token(SECRET, "alice", None))).await;
    let mut bob = WsClient::connect(&url).await;
    let connected = scrape(server.addr).await;
    let d = |after: &Exposition, before: &Exposition, name: &str, labels: &[(&str, &str)]| {
        after.get(name, labels) - before.get(name, labels)
    };
    assert_eq!(d(&connected, &start, "rollcall_connections", &[]), 2.0);
    assert_eq!(
        d(&connected, &start, "rollcall_frames_out_total", &[]),
        2.0,
        "two welcomes"
    );

    // --- joins, errors, a leave ---
    let before = connected;
    let (alice_seen, bob_seen) = (alice.log().len(), bob.log().len());
    alice.join("m1").await;
    bob.join("m1").await;
    alice.join("m2").await;
    let bad_ids = ["a b", "a:b", "{m1}", "é"];
    for bad in bad_ids {
        alice
            .request_err(json!({"type": "join", "session": bad}), "invalid_session")
            .await;
    }
    alice
        .request_err(json!({"type": "members", "session": "m3"}), "not_member")
        .await;
    alice.send_text("{not json");
    alice
        .expect("bad_request", |f| f["code"] == "bad_request")
        .await;
    bob.leave("m1").await;
    alice.expect_event("member_joined", "m1").await;
    alice.expect_event("member_left", "m1").await;
    alice.request_ok(json!({"type": "ping"}), "pong").await;
    let frames_in = 3 + bad_ids.len() + 1 + 1 + 1 + 1; // joins, invalid, not_member, bad JSON, leave, ping
    let after = scrape(server.addr).await;
    alice.drain_ready();
    bob.drain_ready();
    let frames_out = (alice.log().len() - alice_seen) + (bob.log().len() - bob_seen);

    let delta = |name: &str, labels: &[(&str, &str)]| d(&after, &before, name, labels);
    assert_eq!(
        delta("rollcall_joins_total", &[]),
        3.0,
        "three members added"
    );
    assert_eq!(
        delta("rollcall_leaves_total", &[("reason", "left")]),
        1.0,
        "one leave"
    );
    assert_eq!(
        delta("rollcall_store_op_seconds_count", &[("op", "join")]),
        3.0,
        "the store was asked three times to join, never for an invalid id"
    );
    assert_eq!(
        delta("rollcall_store_op_seconds_count", &[("op", "leave")]),
        1.0
    );
    assert_eq!(
        delta("rollcall_errors_total", &[("code", "invalid_session")]),
        bad_ids.len() as f64
    );
    assert_eq!(
        delta("rollcall_errors_total", &[("code", "not_member")]),
        1.0
    );
    assert_eq!(
        delta("rollcall_errors_total", &[("code", "bad_request")]),
        1.0
    );
    assert_eq!(delta("rollcall_frames_in_total", &[]), frames_in as f64);
    assert_eq!(
        delta("rollcall_frames_out_total", &[]),
        frames_out as f64,
        "every frame the clients received, and nothing else"
    );
    assert_eq!(
        delta("rollcall_members_local", &[]),
        2.0,
        "alice in m1 and m2"
    );
    assert_eq!(
        after.get("rollcall_sessions", &[]),
        2.0,
        "sessions with local members"
    );
    assert_eq!(delta("rollcall_store_errors_total", &[("op", "join")]), 0.0);
    assert_eq!(delta("rollcall_event_gaps_total", &[]), 0.0);
    // The store latency histogram is well formed (checked by the parser) and moved.
    assert!(delta("rollcall_store_op_seconds_sum", &[("op", "join")]) > 0.0);

    // --- participation records (alice is signed in; bob is anonymous and not recorded) ---
    let flushed = scrape_until(server.addr, "alice's two participations flushed", |e| {
        d(e, &start, "rollcall_persistence_flushed_total", &[]) >= 2.0
            && e.get("rollcall_persistence_pending", &[]) == 0.0
    })
    .await;
    assert_eq!(
        d(&flushed, &start, "rollcall_persistence_flushed_total", &[]),
        2.0,
        "one record per signed-in user and session"
    );
    assert_eq!(
        d(&flushed, &start, "rollcall_persistence_retries_total", &[]),
        0.0
    );

    // --- the rate limit: a client floods until it is closed ---
    drop(flushed);
    let before = scrape(server.addr).await;
    let mut flooder = WsClient::connect(&url).await;
    for i in 0..400 {
        flooder.send_json(&json!({"type": "ping", "id": i}));
    }
    let close = flooder.closed_with(WAIT).await;
    assert_eq!(close.map(|c| c.0), Some(1008));
    let count = |code: &str| {
        flooder
            .log()
            .iter()
            .filter(|f| f["type"] == code || f["code"] == code)
            .count()
    };
    let (served, refused) = (count("pong"), count("rate_limited"));
    assert!(
        served >= 40 && refused >= 100,
        "burst 40, close after 100 refusals: {served} served, {refused} refused"
    );
    let after = scrape_until(server.addr, "the flooder's connection gone", |e| {
        d(e, &before, "rollcall_connections", &[]) == 0.0
    })
    .await;
    let delta = |name: &str, labels: &[(&str, &str)]| d(&after, &before, name, labels);
    assert_eq!(
        delta("rollcall_rate_limited_total", &[]),
        (refused + 1) as f64,
        "every refused request, the one that closed the connection included, and nothing after it"
    );
    assert_eq!(
        delta("rollcall_errors_total", &[("code", "rate_limited")]),
        refused as f64
    );
    let handled = (served + refused + 1) as f64;
    let frames_in = delta("rollcall_frames_in_total", &[]);
    assert!(
        handled <= frames_in && frames_in <= handled + 1.0,
        "the flooder's frames up to the close (and perhaps its close frame): {frames_in} for {handled} handled"
    );

    // --- a disconnect ends the memberships with reason disconnected ---
    let before = after;
    alice.abort();
    let after = scrape_until(server.addr, "alice's memberships ended", |e| {
        d(
            e,
            &before,
            "rollcall_leaves_total",
            &[("reason", "disconnected")],
        ) >= 2.0
            && d(e, &before, "rollcall_connections", &[]) == -1.0
            // The gauges follow the leaves: the session actors report their counts after them.
            && d(e, &before, "rollcall_members_local", &[]) <= -2.0
            && e.get("rollcall_sessions", &[]) == 0.0
    })
    .await;
    assert_eq!(
        d(
            &after,
            &before,
            "rollcall_leaves_total",
            &[("reason", "disconnected")]
        ),
        2.0
    );
    assert_eq!(d(&after, &before, "rollcall_members_local", &[]), -2.0);
    assert_eq!(after.get("rollcall_sessions", &[]), 0.0);

    // Every rollcall family present is described (HELP) and typed.
    for family in after.types.keys().filter(|f| f.starts_with("rollcall_")) {
        assert!(after.helps.contains(family), "no HELP for {family}");
    }
    drop(bob);
}

/// Every metric named in src/metrics.rs is updated somewhere in src/ (a name nobody updates is
/// an empty promise on the dashboard).
#[test]
fn every_metric_named_in_src_metrics_is_updated_somewhere() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names = std::fs::read_to_string(root.join("metrics.rs")).expect("src/metrics.rs");
    let consts: Vec<&str> = names
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name))
        .collect();
    assert!(consts.len() >= 15, "{consts:?}");
    let mut sources = String::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("metrics.rs") {
                sources.push_str(&std::fs::read_to_string(&path).expect("a source file"));
            }
        }
    }
    // The counting helper in metrics.rs itself updates JOINS and LEAVES.
    let helper = names
        .split("pub fn count_change")
        .nth(1)
        .unwrap_or_default();
    let updated = |name: &str| {
        let pattern = [
            format!("counter!({name}"),
            format!("gauge!({name}"),
            format!("histogram!({name}"),
            format!("metrics::{name})"),
            format!("metrics::{name},"),
        ];
        pattern
            .iter()
            .any(|p| sources.contains(p.as_str()) || helper.contains(p.as_str()))
    };
    let unused: Vec<&&str> = consts.iter().filter(|n| !updated(n)).collect();
    assert!(unused.is_empty(), "metrics never updated: {unused:?}");
}

/// The webhook metrics move with the events a receiver acknowledged: delivered and the latency
/// histogram by the events sent, pending back to 0 once a read finds nothing left.
#[actix_rt::test]
async fn webhook_metrics_follow_the_deliveries() {
    let _serial = SERIAL.lock().await;
    let hooks_secret = "metrics-hooks-secret";
    let receiver = support::webhooks::Receiver::start(hooks_secret).await;
    let mut args = test_args();
    args.webhook_url = Some(receiver.url.clone());
    args.webhook_secret = Some(hooks_secret.to_owned());
    let mut server = TestServer::start(args).await;
    let before = scrape(server.addr).await;
    let mut alice = WsClient::connect(&server.ws_url()).await;
    // session_started, member_joined, leader_changed.
    alice.join("metrics-hooks").await;
    receiver
        .wait_for(WAIT, "the join's three events", |events| events.len() == 3)
        .await;
    let delta = |after: &Exposition, name: &str| after.get(name, &[]) - before.get(name, &[]);
    let after = scrape_until(server.addr, "three events delivered, none pending", |exp| {
        delta(exp, "rollcall_webhook_events_delivered_total") == 3.0
            && exp.get("rollcall_webhook_events_pending", &[]) == 0.0
    })
    .await;
    assert_eq!(
        delta(&after, "rollcall_webhook_delivery_latency_seconds_count"),
        3.0
    );
    assert_eq!(delta(&after, "rollcall_webhook_events_retried_total"), 0.0);
    assert_eq!(delta(&after, "rollcall_webhook_events_dropped_total"), 0.0);
    for family in [
        "rollcall_webhook_events_pending",
        "rollcall_webhook_events_delivered_total",
        "rollcall_webhook_delivery_latency_seconds",
    ] {
        assert!(after.helps.contains(family), "no HELP for {family}");
    }
    drop(alice);
    server.shutdown().await;
}
