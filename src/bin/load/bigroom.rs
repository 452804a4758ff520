//! The `bigroom` scenario: one session filled to N members over the instances given, most of them
//! in presence mode `counts`, then emptied. It reports what a join costs Redis at the start and at
//! the end of the fill (from `INFO cpu`), join latencies, the time to fill and to empty, the frames
//! and bytes the members received, and the servers' resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, Ws, histogram, ms, rss_kib};

/// What the scenario is asked to do.
pub struct Plan {
    pub members: usize,
    pub full: usize,
    pub in_flight: usize,
    /// Sequential joins measured at the start and at the end of the fill.
    pub window: usize,
    pub redis_url: String,
    pub server_pids: Vec<u32>,
}

/// Frames and bytes one group of members received.
#[derive(Default)]
struct Received {
    frames: AtomicU64,
    bytes: AtomicU64,
}

const SESSION: &str = "bigroom";

/// Redis's own CPU time so far, in microseconds (user + system).
fn redis_cpu_micros(conn: &mut redis::Connection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn)?;
    let mut total = 0.0;
    for line in info.lines() {
        for key in ["used_cpu_user:", "used_cpu_sys:"] {
            if let Some(v) = line.strip_prefix(key) {
                total += v.trim().parse::<f64>().context("INFO cpu")?;
            }
        }
    }
    Ok((total * 1e6) as u64)
}

async fn join(url: &str, presence: &str) -> anyhow::Result<(Client, Duration)> {
    let mut client = Client::connect(url).await?;
    let started = Instant::now();
    client
        .request(json!({"type": "join", "session": SESSION, "presence": presence}))
        .await?;
    Ok((client, started.elapsed()))
}

/// Reads a member's frames until its socket closes, counting them.
fn count_frames(mut ws: Ws, into: Arc<Received>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message {
                into.frames.fetch_add(1, Ordering::Relaxed);
                into.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
            }
        }
    })
}

pub async fn run(urls: &[String], plan: Plan) -> anyhow::Result<()> {
    let mut redis = redis::Client::open(plan.redis_url.as_str())?.get_connection()?;
    let full_received = Arc::new(Received::default());
    let counts_received = Arc::new(Received::default());
    let mut latencies = histogram()?;
    let mut readers = Vec::with_capacity(plan.members);
    let url = |i: usize| urls[i % urls.len()].clone();

    let fill_started = Instant::now();
    let mut joined = 0usize;
    // The full members first: they watch the whole fill.
    for i in 0..plan.full {
        let (client, took) = join(&url(i), "full").await?;
        latencies.record(took.as_micros().max(1) as u64)?;
        readers.push(count_frames(client.ws, full_received.clone()));
        joined += 1;
    }
    let mut cpu_per_join = Vec::new();
    let measured_windows = [plan.full.max(100), plan.members - plan.window];
    for (w, start) in measured_windows.into_iter().enumerate() {
        // Fill (concurrently) up to the window's start, then join the window one at a time.
        let mut pending = FuturesUnordered::new();
        while joined < start || !pending.is_empty() {
            while joined < start && pending.len() < plan.in_flight {
                pending.push(join_counted(url(joined)));
                joined += 1;
            }
            if let Some(result) = pending.next().await {
                let (client, took) = result?;
                latencies.record(took.as_micros().max(1) as u64)?;
                readers.push(count_frames(client.ws, counts_received.clone()));
            }
        }
        let cpu_before = redis_cpu_micros(&mut redis)?;
        for _ in 0..plan.window {
            let (client, took) = join(&url(joined), "counts").await?;
            latencies.record(took.as_micros().max(1) as u64)?;
            readers.push(count_frames(client.ws, counts_received.clone()));
            joined += 1;
        }
        let cpu = redis_cpu_micros(&mut redis)?.saturating_sub(cpu_before);
        cpu_per_join.push((start, cpu as f64 / plan.window as f64));
        eprintln!("  … window {w} at {start} members: {joined} joined");
    }
    let fill = fill_started.elapsed();
    // Wait until the full members have seen every join (their frames stop growing).
    let mut last = u64::MAX;
    while full_received.frames.load(Ordering::Relaxed) != last {
        last = full_received.frames.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss: Vec<u64> = plan
        .server_pids
        .iter()
        .map(|pid| rss_kib(*pid))
        .collect::<anyhow::Result<_>>()?;
    let (full_frames, full_bytes) = (
        full_received.frames.load(Ordering::Relaxed),
        full_received.bytes.load(Ordering::Relaxed),
    );
    let (counts_frames, counts_bytes) = (
        counts_received.frames.load(Ordering::Relaxed),
        counts_received.bytes.load(Ordering::Relaxed),
    );
    let counts_members = (plan.members - plan.full) as f64;

    let empty_started = Instant::now();
    for reader in &readers {
        reader.abort();
    }
    drop(readers);
    // Emptied when a fresh member is alone (its `joined` lists only itself).
    let mut probe_attempts = 0;
    let emptied = loop {
        let mut probe = Client::connect(&url(0)).await?;
        let reply = probe
            .request(json!({"type": "join", "session": SESSION}))
            .await?;
        if reply["counts"]["connections"] == 1 {
            break empty_started.elapsed();
        }
        probe_attempts += 1;
        anyhow::ensure!(
            probe_attempts < 600,
            "the session did not empty within a minute"
        );
        drop(probe);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let joins = plan.members as f64;
    println!(
        "\nscenario bigroom: {} members over {} instances, {} full and {} in presence counts",
        plan.members,
        urls.len(),
        plan.full,
        plan.members - plan.full
    );
    println!("| figure | value |\n|---|---|");
    for (at, cpu) in &cpu_per_join {
        println!(
            "| Redis CPU per join at {at} members ({} sequential joins) | {cpu:.0} µs |",
            plan.window
        );
    }
    if let [(_, first), (_, last)] = cpu_per_join.as_slice() {
        println!("| ratio, end of fill / start | {:.2} |", last / first);
    }
    println!(
        "| join p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max())
    );
    println!(
        "| time to fill ({} in flight between the windows) | {:.2} s |",
        plan.in_flight,
        fill.as_secs_f64()
    );
    println!(
        "| time to empty (all sockets closed → a new member is alone) | {:.2} s |",
        emptied.as_secs_f64()
    );
    println!(
        "| frames per full member during the fill | {:.0} ({:.0} bytes) |",
        full_frames as f64 / plan.full as f64,
        full_bytes as f64 / plan.full as f64
    );
    println!(
        "| frames per counts member during the fill | {:.1} ({:.0} bytes) |",
        counts_frames as f64 / counts_members,
        counts_bytes as f64 / counts_members
    );
    println!(
        "| frames and bytes sent per join, all members | {:.2} frames, {:.0} bytes |",
        (full_frames + counts_frames) as f64 / joins,
        (full_bytes + counts_bytes) as f64 / joins
    );
    for (pid, kib) in plan.server_pids.iter().zip(&rss) {
        println!("| server {pid} RSS with the room full | {kib} KiB |");
    }
    Ok(())
}

async fn join_counted(url: String) -> anyhow::Result<(Client, Duration)> {
    join(&url, "counts").await
}
