//! `rollcall-load`: drives running rollcall instances with real WebSocket clients and reports what
//! they saw. Three scenarios:
//!
//! - `churn`: many connections join and leave random sessions; joins/s and join latency.
//! - `fanout`: one publisher, one big session; delivered messages/s and delivery latency.
//! - `idle`: many idle connections, each in a session; the server's resident memory per connection.
//! - `bigroom`: one session filled to 10,000 members, most in presence mode `counts`; what a join
//!   costs Redis at the start and at the end, latencies, frames per member (see [`bigroom`]).
//! - `kick`: kicks through one instance's server API of members whose sockets are on another
//!   instance, one at a time: the latency to the `kicked` frame (see [`kick`]).
//!
//! Every run is bounded in time and count, prints progress each second and a summary at the end.
//! Point it only at servers on this machine, started with a rate limit that lets a load client
//! through (e.g. `--rate-limit-per-second 100000 --rate-limit-burst 100000`): the defaults
//! (20/s, burst 40) would answer most churn and publish requests with `rate_limited`.
//!
//! Receivers read frames without a full JSON parse (a substring test for `message` frames and a
//! scan for the send timestamp), so the tool spends its share of a small machine on sockets, not
//! on parsing. Latencies are measured on this machine's clock only (sender and receivers are in
//! this one process).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "load/bigroom.rs"]
mod bigroom;
#[path = "load/kick.rs"]
mod kick;

#[derive(Parser)]
#[command(name = "rollcall-load", about = "Load generator for rollcall")]
struct Cli {
    /// WebSocket URLs of the instances; connections are spread over them round-robin.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    urls: Vec<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Connections join and leave random sessions as fast as they can.
    Churn {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 16)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One publisher sends to a session of `members` receivers at `rate` messages per second.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 300)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Opens idle connections, each in a session, and measures the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// PID of the server process, to read its resident memory.
        #[arg(long)]
        server_pid: u32,
        /// How long to hold the connections open after they are all in.
        #[arg(long, default_value_t = 3)]
        hold_seconds: u64,
    },
    /// Fills one session to `members` (the first `full` in presence full, the rest in counts),
    /// then empties it.
    Bigroom {
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        full: usize,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Sequential joins whose Redis CPU is measured, at the start and at the end.
        #[arg(long, default_value_t = 200)]
        window: usize,
        /// The Redis the instances share (read for `INFO cpu`).
        #[arg(long)]
        redis_url: String,
        /// PIDs of the server processes, to read their resident memory.
        #[arg(long = "server-pid")]
        server_pids: Vec<u32>,
    },
    /// Kicks members one at a time through one instance's server API while their sockets are on
    /// the last `--url`: the time from the HTTP request to the `kicked` frame at the client.
    Kick {
        /// `host:port` of the instance whose server API makes the kicks.
        #[arg(long)]
        api: String,
        /// A server API key of the instances (`--api-key`).
        #[arg(long, env = "ROLLCALL_API_KEY")]
        api_key: String,
        #[arg(long, default_value_t = 500)]
        kicks: usize,
    },
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    ws: Ws,
    next_id: u64,
    /// This connection's id, from `welcome`.
    connection: String,
}

impl Client {
    async fn connect(url: &str) -> anyhow::Result<Client> {
        // tungstenite's default 128 KiB read buffer is zeroed on every read (a memset that took a
        // quarter of this tool's CPU in the fan-out profile) and costs 128 KiB per idle client.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let welcome = next_json(&mut ws).await?;
        if welcome["type"] != "welcome" {
            bail!("expected welcome, got {welcome}");
        }
        let connection = welcome["connection"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Client {
            ws,
            next_id: 0,
            connection,
        })
    }

    /// Sends a request and waits for its reply, skipping events.
    async fn request(&mut self, mut body: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        body["id"] = json!(id);
        self.ws.send(Message::text(body.to_string())).await?;
        loop {
            let frame = next_json(&mut self.ws).await?;
            if frame["id"] == json!(id) {
                if frame["type"] == "error" {
                    bail!("request {body} failed: {frame}");
                }
                return Ok(frame);
            }
        }
    }
}

async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Prints a line every second with the counter's rate until `stop` is set.
fn progress(label: &'static str, counter: Arc<AtomicU64>, done: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while done.load(Ordering::Relaxed) == 0 {
            tick.tick().await;
            let now = counter.load(Ordering::Relaxed);
            eprintln!(
                "  … {label}: {} in the last second, {now} total",
                now - last
            );
            last = now;
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Churn {
            connections,
            sessions,
            seconds,
        } => churn(&cli.urls, connections, sessions, seconds).await,
        Scenario::Fanout {
            members,
            rate,
            seconds,
        } => fanout(&cli.urls, members, rate, seconds).await,
        Scenario::Idle {
            connections,
            sessions,
            server_pid,
            hold_seconds,
        } => idle(&cli.urls, connections, sessions, server_pid, hold_seconds).await,
        Scenario::Bigroom {
            members,
            full,
            in_flight,
            window,
            redis_url,
            server_pids,
        } => {
            let plan = bigroom::Plan {
                members,
                full,
                in_flight,
                window,
                redis_url,
                server_pids,
            };
            bigroom::run(&cli.urls, plan).await
        }
        Scenario::Kick {
            api,
            api_key,
            kicks,
        } => {
            let url = cli.urls.last().context("no --url")?;
            kick::run(url, &api, &api_key, kicks).await
        }
    }
}

async fn churn(
    urls: &[String],
    connections: usize,
    sessions: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let joins = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(histogram()?));
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        clients.push(Client::connect(&urls[i % urls.len()]).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    progress("joins", joins.clone(), done.clone());
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let joins = joins.clone();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = histogram()?;
            let mut n = i as u64;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let session = format!("churn-{}", (n >> 33) % sessions as u64);
                let started = Instant::now();
                client
                    .request(json!({"type": "join", "session": session}))
                    .await?;
                local.saturating_record(started.elapsed().as_micros() as u64);
                joins.fetch_add(1, Ordering::Relaxed);
                client
                    .request(json!({"type": "leave", "session": session}))
                    .await?;
            }
            latencies.lock().await.add(&local)?;
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    done.store(1, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let h = latencies.lock().await;
    let total = joins.load(Ordering::Relaxed);
    println!("\nscenario churn: {connections} connections over {sessions} sessions, {seconds} s");
    println!("| figure | value |\n|---|---|");
    println!("| joins (each followed by a leave) | {total} |");
    println!("| joins per second | {:.0} |", total as f64 / elapsed);
    println!(
        "| join latency p50 | {:.2} ms |",
        ms(h.value_at_quantile(0.5))
    );
    println!(
        "| join latency p99 | {:.2} ms |",
        ms(h.value_at_quantile(0.99))
    );
    Ok(())
}

/// The send timestamp (`data.t`, µs) of a `message` frame; `None` for every other frame. A
/// substring test and a digit scan, not a JSON parse.
fn message_sent_at(frame: &str) -> Option<u64> {
    if !frame.contains(r#""type":"message""#) {
        return None;
    }
    let at = frame.find(r#""t":"#)? + 4;
    let digits: &str = &frame[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Connects `count` clients (at most `parallel` handshakes at once) and joins each to
/// `session_of(i)`. Returns them in index order.
async fn connect_and_join(
    urls: &[String],
    count: usize,
    parallel: usize,
    session_of: impl Fn(usize) -> String,
    progress_counter: Option<Arc<AtomicU64>>,
) -> anyhow::Result<Vec<Client>> {
    let mut clients: Vec<Option<Client>> = (0..count).map(|_| None).collect();
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < count || !pending.is_empty() {
        while next < count && pending.len() < parallel {
            let url = urls[next % urls.len()].clone();
            let session = session_of(next);
            let i = next;
            pending.push(async move {
                let mut client = Client::connect(&url).await?;
                client
                    .request(json!({"type": "join", "session": session}))
                    .await?;
                anyhow::Ok((i, client))
            });
            next += 1;
        }
        if let Some(done) = pending.next().await {
            let (i, client) = done?;
            if let Some(c) = &progress_counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
            clients[i] = Some(client);
        }
    }
    Ok(clients.into_iter().flatten().collect())
}

async fn fanout(urls: &[String], members: usize, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let session = format!("fanout-{}", now_micros());
    let expected = rate * seconds;
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(histogram()?));
    eprintln!("joining {members} receivers…");
    let joined = Arc::new(AtomicU64::new(0));
    progress("receivers joined", joined.clone(), done.clone());
    let receivers = connect_and_join(urls, members, 32, |_| session.clone(), Some(joined)).await?;
    done.store(1, Ordering::Relaxed);
    // Every receiver reads from now on (the member_joined events of the set-up are skipped), so
    // nothing piles up before the first message.
    let finished_sending = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in receivers {
        let (delivered, last_delivery, latencies, finished_sending) = (
            delivered.clone(),
            last_delivery.clone(),
            latencies.clone(),
            finished_sending.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ws = client.ws;
            let mut local = histogram()?;
            let mut got = 0;
            let limit = Instant::now() + Duration::from_secs(seconds + 30);
            while got < expected && Instant::now() < limit {
                let frame = match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) => bail!("a receiver's connection ended"),
                    // Quiet for a second: give up once the publisher is done for 5 s.
                    Err(_) => {
                        let sent_done = finished_sending.load(Ordering::Relaxed);
                        if sent_done > 0 && now_micros() > sent_done + 5_000_000 {
                            break;
                        }
                        continue;
                    }
                };
                if let Some(sent) = message_sent_at(&frame) {
                    let now = now_micros();
                    local.saturating_record(now.saturating_sub(sent).max(1));
                    delivered.fetch_add(1, Ordering::Relaxed);
                    last_delivery.fetch_max(now, Ordering::Relaxed);
                    got += 1;
                }
            }
            latencies.lock().await.add(&local)?;
            anyhow::Ok(got)
        }));
    }
    let publisher = Client::connect(&urls[0]).await?;
    let mut publisher = publisher;
    publisher
        .request(json!({"type": "join", "session": session}))
        .await?;
    // Let the set-up events drain before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut sink, mut stream) = publisher.ws.split();
    // The publisher's replies: count acknowledgements and errors (e.g. rate_limited).
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let reader = {
        let (acked, refused) = (acked.clone(), refused.clone());
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    if text.contains(r#""type":"published""#) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else if text.contains(r#""type":"error""#)
                        && refused.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        eprintln!("publish refused: {text}");
                    }
                }
            }
        })
    };
    let done = Arc::new(AtomicU64::new(0));
    progress("delivered", delivered.clone(), done.clone());
    let started_us = now_micros();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    while seq < expected {
        tick.tick().await;
        seq += 1;
        let data = json!({"t": now_micros(), "seq": seq});
        sink.send(Message::text(
            json!({"type": "publish", "id": seq, "session": session, "data": data}).to_string(),
        ))
        .await?;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    finished_sending.store(now_micros(), Ordering::Relaxed);
    let mut short = 0usize;
    for task in tasks {
        if task.await?? < expected {
            short += 1;
        }
    }
    done.store(1, Ordering::Relaxed);
    reader.abort();
    let total = delivered.load(Ordering::Relaxed);
    let window = last_delivery
        .load(Ordering::Relaxed)
        .saturating_sub(started_us) as f64
        / 1e6;
    let h = latencies.lock().await;
    println!("\nscenario fanout: 1 publisher → {members} members, {rate} msg/s for {seconds} s");
    println!("| figure | value |\n|---|---|");
    println!(
        "| messages published (acknowledged / refused) | {expected} ({} / {}) in {send_seconds:.2} s |",
        acked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    println!(
        "| messages delivered | {total} of {} ({short} receivers short) |",
        expected * members as u64
    );
    println!(
        "| delivered per second (first send → last delivery, {window:.2} s) | {:.0} |",
        total as f64 / window.max(1e-9)
    );
    println!(
        "| delivery latency p50 | {:.2} ms |",
        ms(h.value_at_quantile(0.5))
    );
    println!(
        "| delivery latency p99 | {:.2} ms |",
        ms(h.value_at_quantile(0.99))
    );
    println!("| delivery latency max | {:.2} ms |", ms(h.max()));
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

async fn idle(
    urls: &[String],
    connections: usize,
    sessions: usize,
    pid: u32,
    hold: u64,
) -> anyhow::Result<()> {
    let before = rss_kib(pid)?;
    let opened = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    progress("connections in a session", opened.clone(), done.clone());
    let started = Instant::now();
    let clients = connect_and_join(
        urls,
        connections,
        64,
        |i| format!("idle-{}", i % sessions),
        Some(opened),
    )
    .await?;
    let setup = started.elapsed().as_secs_f64();
    done.store(1, Ordering::Relaxed);
    // Keep reading so pings are answered and events do not pile up in the kernel buffers.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { while next_json(&mut c.ws).await.is_ok() {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = rss_kib(pid)?;
    let alive = readers.iter().filter(|r| !r.is_finished()).count();
    let per = (after.saturating_sub(before)) as f64 / connections as f64;
    println!("\nscenario idle: {connections} connections over {sessions} sessions");
    println!("| figure | value |\n|---|---|");
    println!("| connected and joined in | {setup:.1} s |");
    println!("| connections still open after {hold} s | {alive} |");
    println!("| server RSS before | {before} KiB |");
    println!("| server RSS with the connections | {after} KiB |");
    println!("| server memory per idle connection | {per:.1} KiB |");
    for reader in readers {
        reader.abort();
    }
    Ok(())
}
