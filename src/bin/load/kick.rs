//! The `kick` scenario: the cross-instance latency of the server API's kick. One client on the
//! instance of its `--url` joins a fresh session (with a second member, so that the kick hands the
//! leadership over); the kick is posted to another instance's API (`--api`); the time runs from
//! just before the HTTP request is sent to the `kicked` frame read by the client. The kicks go one
//! at a time, each in its own session. It reports p50, p99 and max, and the HTTP answer's time.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Client, histogram, ms, next_json};

/// How long one kick may take before the run is called failed.
const GIVE_UP: Duration = Duration::from_secs(5);

/// `POST path` with a JSON `body` and the API key, over a fresh connection (HTTP/1.1, closed after
/// the answer): the status code.
async fn post(api: &str, key: &str, path: &str, body: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(api)
        .await
        .with_context(|| format!("connecting to {api}"))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nX-Api-Key: {key}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status line")?;
    Ok(status)
}

pub async fn run(url: &str, api: &str, key: &str, kicks: usize) -> anyhow::Result<()> {
    let mut to_kick = Client::connect(url).await?;
    let mut peer = Client::connect(url).await?;
    let mut latency = histogram()?;
    let mut answered = histogram()?;
    let started = Instant::now();
    for i in 0..kicks {
        let session = format!("kick-{}-{i}", std::process::id());
        to_kick
            .request(json!({"type": "join", "session": session}))
            .await?;
        peer.request(json!({"type": "join", "session": session}))
            .await?;
        let body = json!({"connection": to_kick.connection, "reason": "bench"}).to_string();
        let path = format!("/api/server/sessions/{session}/kick");
        let sent = Instant::now();
        let (api, key) = (api.to_owned(), key.to_owned());
        let http = tokio::spawn(async move {
            let status = post(&api, &key, &path, &body).await;
            (status, sent.elapsed())
        });
        let kicked = tokio::time::timeout(GIVE_UP, async {
            loop {
                let frame = next_json(&mut to_kick.ws).await?;
                if frame["type"] == "kicked" && frame["session"] == json!(session) {
                    return anyhow::Ok(sent.elapsed());
                }
            }
        })
        .await
        .with_context(|| format!("no kicked frame within {GIVE_UP:?} (kick {i})"))??;
        let (status, took) = http.await?;
        let status = status?;
        if status != 200 {
            bail!("kick {i} was answered with HTTP {status}");
        }
        latency.record(kicked.as_micros().max(1) as u64)?;
        answered.record(took.as_micros().max(1) as u64)?;
        peer.request(json!({"type": "leave", "session": session}))
            .await?;
    }
    println!(
        "kick: {kicks} kicks in {:.1} s; kicked frame after the request: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; HTTP answer: p50 {:.2} ms, p99 {:.2} ms",
        started.elapsed().as_secs_f64(),
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
        ms(answered.value_at_quantile(0.5)),
        ms(answered.value_at_quantile(0.99)),
    );
    Ok(())
}
