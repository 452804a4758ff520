//! Command line and environment configuration (docs/protocol.md §3). Every flag also reads an
//! environment variable; the defaults run a single instance with no external server.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::HistorySettings;
use crate::webhooks::{DeliverySettings, WebhookSettings};

#[derive(Debug, Parser)]
#[command(
    name = "rollcall",
    version,
    about = "Real-time session engine with no ghost participants"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Run the pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Print a sign-in token signed with the configured secret (for development and tests).
    Token(TokenArgs),
}

#[derive(Clone, Debug, Args)]
pub struct MigrateArgs {
    /// Database: `postgres://…` or `sqlite://PATH`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub`), 1 to 128 characters.
    #[arg(long)]
    pub user: String,
    /// Default display name (`name`).
    #[arg(long)]
    pub name: Option<String>,
    /// How long the token is valid, such as `1h` or `30m`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Sessions the token may join, comma-separated (`sessions`); absent = any.
    #[arg(long, value_delimiter = ',')]
    pub sessions: Option<Vec<String>>,
    /// HS256 secret to sign with.
    #[arg(long, env = "ROLLCALL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// `cargo run` keeps working with no database server.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://rollcall.db";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "ROLLCALL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Shared store; unset = in-process store (one instance only).
    #[arg(long, env = "REDIS_URL", conflicts_with = "redis_cluster_urls")]
    pub redis_url: Option<String>,
    /// Shared store on a Redis Cluster (≥ 7): seed nodes `redis://host:port`, comma-separated; the
    /// other nodes are discovered. Exclusive with `--redis-url`.
    #[arg(long, env = "ROLLCALL_REDIS_CLUSTER_URLS", value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,
    /// Participation records: `postgres://…` or `sqlite://PATH`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// HS256 secret of sign-in tokens. With no secret, public key or JWKS every connection is
    /// anonymous and `/api/*` is open.
    #[arg(long, env = "ROLLCALL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Keys of the server API (`/api/server/*`, header `X-Api-Key`), comma-separated so that a
    /// key can be rotated; unset = the server API is off (404).
    #[arg(
        long,
        env = "ROLLCALL_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_key: Vec<String>,
    /// Bearer token that `/metrics` requires (`Authorization: Bearer <token>`); unset = open.
    #[arg(long, env = "ROLLCALL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// JWKS endpoint of an identity provider whose tokens (RS256/384/512, ES256/384, EdDSA) sign
    /// users in; fetched, cached, and fetched again for an unknown `kid` at most once per 10 s.
    #[arg(long, env = "ROLLCALL_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// PEM file of an identity provider's public key (RSA, P-256, P-384 or Ed25519).
    #[arg(long, env = "ROLLCALL_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// Required `iss` of every token; unset = not checked.
    #[arg(long, env = "ROLLCALL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of every token; unset = a token with an `aud` claim is refused.
    #[arg(long, env = "ROLLCALL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on a token's `exp` and `nbf`, in seconds (at most 60).
    #[arg(
        long,
        env = "ROLLCALL_JWT_LEEWAY_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=60),
    )]
    pub jwt_leeway_secs: u64,
    /// Accept connections without a token (`--allow-anonymous false` refuses them with 401).
    #[arg(
        long,
        env = "ROLLCALL_ALLOW_ANONYMOUS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
    )]
    pub allow_anonymous: bool,
    /// Stable name of this instance (restart fast path). Default: host name + pid.
    #[arg(long, env = "ROLLCALL_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// Instance lease renewal and reaper tick, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_HEARTBEAT_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..),
    )]
    pub heartbeat_ms: u64,
    /// An instance not renewing its lease for this long is dead, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_LEASE_MS",
        default_value_t = 3000,
        value_parser = clap::value_parser!(u64).range(20..),
    )]
    pub lease_ms: u64,
    /// Interval of WebSocket pings to clients, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_CLIENT_PING_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(10..),
    )]
    pub client_ping_ms: u64,
    /// A client silent for this long is closed, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_CLIENT_TIMEOUT_MS",
        default_value_t = 15000,
        value_parser = clap::value_parser!(u64).range(20..),
    )]
    pub client_timeout_ms: u64,
    /// How long a member whose socket was lost without a clean end (dropped, timed out, its
    /// instance lost or stopped) stays listed as `reconnecting` for a `resume`, in milliseconds;
    /// 0 removes it at once.
    #[arg(long, env = "ROLLCALL_RESUME_GRACE_MS", default_value_t = 10000)]
    pub resume_grace_ms: u64,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "ROLLCALL_KEY_PREFIX", default_value = "rollcall")]
    pub key_prefix: String,
    /// Log format.
    #[arg(long, env = "ROLLCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest WebSocket message accepted, in bytes, whole or reassembled from fragments; a larger
    /// one closes the connection with 1009. `--max-frame-bytes` is its former name.
    #[arg(
        long,
        alias = "max-frame-bytes",
        env = "ROLLCALL_MAX_MESSAGE_BYTES",
        default_value_t = 64 * 1024
    )]
    pub max_message_bytes: usize,
    /// Sessions one connection may be in at once.
    #[arg(
        long,
        env = "ROLLCALL_MAX_SESSIONS_PER_CONNECTION",
        default_value_t = 8
    )]
    pub max_sessions_per_connection: usize,
    /// Members one session may have.
    #[arg(
        long,
        env = "ROLLCALL_MAX_MEMBERS_PER_SESSION",
        default_value_t = 10_000
    )]
    pub max_members_per_session: usize,
    /// Serialized size limit of `publish` data, in bytes.
    #[arg(long, env = "ROLLCALL_MAX_PUBLISH_BYTES", default_value_t = 16 * 1024)]
    pub max_publish_bytes: usize,
    /// Longest wait of a frame (`message` or presence event) so that a busy session's frames reach
    /// each socket in one write, in milliseconds. A frame after a quiet window goes out at once;
    /// 0 sends every frame at once.
    #[arg(
        long,
        env = "ROLLCALL_MESSAGE_BATCH_MS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=1000),
    )]
    pub message_batch_ms: u64,
    /// Longest wait of a `counts` event for members in presence mode `counts`, in milliseconds:
    /// they get at most one per interval, and only when the counts changed.
    #[arg(
        long,
        env = "ROLLCALL_COUNTS_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..=60_000),
    )]
    pub counts_interval_ms: u64,
    /// Messages each session keeps for `history` requests and for members that come back
    /// (`join` with `since`); 0 keeps none (messages are still numbered).
    #[arg(
        long,
        env = "ROLLCALL_HISTORY_SIZE",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(0..=10_000),
    )]
    pub history_size: u64,
    /// How long a session keeps a message, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_HISTORY_TTL_MS",
        default_value_t = 300_000,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub history_ttl_ms: u64,
    /// Connections this instance accepts; more are refused with HTTP 503 before the upgrade.
    #[arg(long, env = "ROLLCALL_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Requests per second one connection may send, sustained; excess gets `rate_limited`.
    #[arg(
        long,
        env = "ROLLCALL_RATE_LIMIT_PER_SECOND",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub rate_limit_per_second: u32,
    /// Requests one connection may send in a burst above the sustained rate.
    #[arg(
        long,
        env = "ROLLCALL_RATE_LIMIT_BURST",
        default_value_t = 40,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub rate_limit_burst: u32,
    /// A connection with more refused requests than this within 10 seconds is closed with 1008.
    #[arg(
        long,
        env = "ROLLCALL_RATE_LIMIT_CLOSE_AFTER",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub rate_limit_close_after: u32,
    /// Origins allowed to open a WebSocket (comma-separated, e.g. `https://app.example`); others
    /// get HTTP 403. Unset: any origin, and requests without an `Origin` header.
    #[arg(long, env = "ROLLCALL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// How long a graceful stop may take before the process exits anyway, in milliseconds.
    #[arg(long, env = "ROLLCALL_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// Where to POST every session change (webhooks); unset = no webhooks. Needs
    /// `--webhook-secret`.
    #[arg(long, env = "ROLLCALL_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Secret the webhook signatures (`X-Rollcall-Signature`) are made with.
    #[arg(long, env = "ROLLCALL_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// How long an undelivered webhook event is retried before it is dropped, in milliseconds.
    #[arg(
        long,
        env = "ROLLCALL_WEBHOOK_RETENTION_MS",
        default_value_t = 3_600_000,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub webhook_retention_ms: u64,
    /// Threads serving WebSocket and HTTP connections (the main thread runs the sessions and the
    /// Redis connections besides). Unset: one per core.
    #[arg(
        long,
        env = "ROLLCALL_WORKERS",
        value_parser = clap::value_parser!(u16).range(1..=1024),
    )]
    pub workers: Option<u16>,
}

impl ServeArgs {
    /// The arguments with every default, as `rollcall serve` with no flags and no environment.
    pub fn defaults() -> ServeArgs {
        Cli::parse_from(["rollcall"]).serve
    }

    pub fn instance_name(&self) -> String {
        self.instance_name.clone().unwrap_or_else(|| {
            let host = hostname_or_localhost();
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// What each session keeps of its messages (`--history-size`, `--history-ttl-ms`).
    pub fn history(&self) -> HistorySettings {
        HistorySettings {
            size: self.history_size as usize,
            ttl: Duration::from_millis(self.history_ttl_ms),
        }
    }
}

/// Webhook flags that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error(
        "--webhook-url (ROLLCALL_WEBHOOK_URL) needs --webhook-secret (ROLLCALL_WEBHOOK_SECRET): \
         the receiver checks every request's signature with it"
    )]
    MissingSecret,
    #[error(
        "--webhook-secret (ROLLCALL_WEBHOOK_SECRET) is set without --webhook-url (ROLLCALL_WEBHOOK_URL)"
    )]
    SecretWithoutUrl,
    #[error("--webhook-url (ROLLCALL_WEBHOOK_URL) = {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
}

impl ServeArgs {
    /// Where and how to deliver webhooks; `None` when `--webhook-url` is unset.
    pub fn webhooks(&self) -> Result<Option<WebhookSettings>, WebhookConfigError> {
        let url = self
            .webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let secret = self.webhook_secret.as_deref().filter(|s| !s.is_empty());
        let (url, secret) = match (url, secret) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(WebhookConfigError::SecretWithoutUrl),
            (Some(_), None) => return Err(WebhookConfigError::MissingSecret),
            (Some(url), Some(secret)) => (url, secret),
        };
        let parsed =
            reqwest::Url::parse(url).map_err(|_| WebhookConfigError::BadUrl(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(WebhookConfigError::BadUrl(url.to_owned()));
        }
        Ok(Some(WebhookSettings {
            url: url.to_owned(),
            secret: secret.to_owned(),
            delivery: DeliverySettings {
                retention: Duration::from_millis(self.webhook_retention_ms),
                ..DeliverySettings::default()
            },
        }))
    }
}

fn hostname_or_localhost() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol_table() {
        let args = ServeArgs::defaults();
        assert_eq!(args.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(args.heartbeat_ms, 1000);
        assert_eq!(args.lease_ms, 3000);
        assert_eq!(args.client_ping_ms, 5000);
        assert_eq!(args.client_timeout_ms, 15000);
        assert_eq!(args.resume_grace_ms, 10000);
        assert_eq!(args.key_prefix, "rollcall");
        assert_eq!(args.max_message_bytes, 65536);
        assert_eq!(args.max_sessions_per_connection, 8);
        assert_eq!(args.max_publish_bytes, 16384);
        assert!(args.redis_url.is_none());
        assert!(args.redis_cluster_urls.is_empty());
        assert!(args.jwt_secret.is_none());
        assert!(args.api_key.is_empty(), "the server API is off");
        assert!(args.allow_anonymous);
        assert_eq!(args.workers, None, "one worker per core");
        assert_eq!(args.history(), HistorySettings::default());
        assert_eq!(args.history_size, 100);
        assert_eq!(args.history_ttl_ms, 300_000);
        assert!(args.webhook_url.is_none());
        assert!(args.webhook_secret.is_none());
        assert_eq!(args.webhook_retention_ms, 3_600_000);
        assert!(matches!(args.webhooks(), Ok(None)));
    }

    #[test]
    fn a_webhook_url_needs_a_secret_and_the_error_names_both() {
        let parse = |flags: &[&str]| {
            Cli::try_parse_from(std::iter::once("rollcall").chain(flags.iter().copied()))
                .expect("the flags parse")
                .serve
                .webhooks()
        };
        let message = parse(&["--webhook-url", "https://app.example/hooks"])
            .expect_err("a URL without a secret is refused")
            .to_string();
        for name in [
            "--webhook-url",
            "ROLLCALL_WEBHOOK_URL",
            "--webhook-secret",
            "ROLLCALL_WEBHOOK_SECRET",
        ] {
            assert!(message.contains(name), "{name} not in {message:?}");
        }
        assert!(parse(&["--webhook-secret", "s"]).is_err(), "a secret alone");
        assert!(parse(&["--webhook-url", "ftp://x", "--webhook-secret", "s"]).is_err());
        assert!(parse(&["--webhook-url", "not a url", "--webhook-secret", "s"]).is_err());
        let settings = parse(&[
            "--webhook-url",
            "http://127.0.0.1:9/hooks",
            "--webhook-secret",
            "s",
            "--webhook-retention-ms",
            "5000",
        ])
        .expect("valid")
        .expect("webhooks on");
        assert_eq!(settings.url, "http://127.0.0.1:9/hooks");
        assert_eq!(settings.secret, "s");
        assert_eq!(settings.delivery.retention, Duration::from_millis(5000));
    }

    #[test]
    fn history_size_may_be_zero_and_its_ttl_may_not() {
        let parse = |flags: &[&str]| {
            Cli::try_parse_from(std::iter::once("rollcall").chain(flags.iter().copied()))
                .map(|c| c.serve.history())
        };
        let off = parse(&["--history-size", "0"]).expect("0 turns history off");
        assert_eq!(off.size, 0);
        let short = parse(&["--history-ttl-ms", "1500"]).expect("a ttl in ms");
        assert_eq!(short.ttl, Duration::from_millis(1500));
        assert!(parse(&["--history-ttl-ms", "0"]).is_err());
        assert!(parse(&["--history-size", "-1"]).is_err());
        assert!(parse(&["--history-size", "10001"]).is_err());
    }

    #[test]
    fn workers_are_at_least_one() {
        let parse = |n: &str| Cli::try_parse_from(["rollcall", "--workers", n]);
        assert_eq!(parse("1").map(|c| c.serve.workers).ok(), Some(Some(1)));
        assert!(parse("0").is_err(), "no thread to serve connections");
    }

    #[test]
    fn cluster_urls_are_a_list_and_exclusive_with_redis_url() {
        let cli = Cli::try_parse_from([
            "rollcall",
            "--redis-cluster-urls",
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
        ])
        .expect("cluster urls alone parse");
        assert_eq!(
            cli.serve.redis_cluster_urls,
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        let both = Cli::try_parse_from([
            "rollcall",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-cluster-urls",
            "redis://127.0.0.1:7000",
        ]);
        assert!(
            both.is_err(),
            "--redis-url with --redis-cluster-urls is refused"
        );
    }
}
