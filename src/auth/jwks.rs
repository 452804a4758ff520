//! The keys of an identity provider's JWKS endpoint (`--jwt-jwks-url`): fetched, cached, fetched
//! again for a `kid` the cache does not know (at most once per [`REFETCH_INTERVAL`], however many
//! tokens name unknown keys), and refreshed in the background once older than [`MAX_AGE`]. While
//! the endpoint is down the keys last fetched keep verifying tokens (served stale).
//!
//! Times are tokio's, so the rate limit can be tested on a paused clock.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use tokio::time::Instant;

use super::keys::VerifyingKey;

/// Shortest time between two fetches of the JWKS.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again in the background (to learn of removed keys).
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Longest wait for the endpoint's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_BODY: usize = 1024 * 1024;

/// Why the JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the JWKS endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the JWKS document is not valid: {0}")]
    Invalid(String),
}

/// Where the JWKS document comes from: the endpoint, or a test's stand-in.
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    /// The JWKS document, as JSON text.
    async fn fetch(&self) -> Result<String, JwksError>;
}

/// A JWKS endpoint over HTTP(S).
pub struct HttpSource {
    client: reqwest::Client,
    url: String,
}

impl HttpSource {
    pub fn new(url: &str) -> Result<HttpSource, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Unreachable(e.to_string()))?;
        Ok(HttpSource {
            client,
            url: url.to_owned(),
        })
    }
}

#[async_trait]
impl JwksSource for HttpSource {
    async fn fetch(&self) -> Result<String, JwksError> {
        let unreachable = |e: reqwest::Error| JwksError::Unreachable(e.without_url().to_string());
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let body = response.bytes().await.map_err(unreachable)?;
        if body.len() > MAX_BODY {
            return Err(JwksError::Invalid("larger than 1 MiB".into()));
        }
        String::from_utf8(body.to_vec()).map_err(|_| JwksError::Invalid("not UTF-8".into()))
    }
}

/// The keys last fetched.
#[derive(Default)]
struct KeySet {
    keys: Vec<VerifyingKey>,
    fetched_at: Option<Instant>,
}

/// The cached JWKS.
pub struct Jwks {
    source: Box<dyn JwksSource>,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch started; held while a fetch runs, so that there is one at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.current().keys.len())
            .finish()
    }
}

impl Jwks {
    pub fn new(source: impl JwksSource) -> Arc<Jwks> {
        Arc::new(Jwks {
            source: Box::new(source),
            keys: RwLock::new(Arc::default()),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The keys that may verify a token with this `kid` (any key when it has none) and `alg`. A
    /// `kid` the cache does not know makes one fetch, unless one started within the last
    /// [`REFETCH_INTERVAL`].
    pub async fn candidates(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Vec<VerifyingKey> {
        let set = self.current();
        let found = matching(&set, kid, alg);
        if !found.is_empty() || (kid.is_none() && set.fetched_at.is_some()) {
            if set.fetched_at.is_some_and(|at| at.elapsed() >= MAX_AGE) {
                self.refresh_in_background();
            }
            return found;
        }
        self.refetch().await;
        matching(&self.current(), kid, alg)
    }

    /// Fetches the keys now (at start-up), waiting for a fetch already running. Not counted by the
    /// rate limit of unknown `kid`s. True when the keys were replaced.
    pub async fn fetch(&self) -> bool {
        let _one_at_a_time = self.last_fetch.lock().await;
        self.fetch_now().await
    }

    /// Fetches the keys again, unless another fetch of this kind started within the last
    /// [`REFETCH_INTERVAL`] (or is running: then this waits for it).
    async fn refetch(&self) -> bool {
        let asked = Instant::now();
        let mut last = self.last_fetch.lock().await;
        if self.current().fetched_at.is_some_and(|at| at > asked) {
            // A fetch (the start-up one, say) finished while this waited: its keys are the news.
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> bool {
        let fetched = self.source.fetch().await.and_then(|body| parse(&body));
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: Some(Instant::now()),
                });
                match self.keys.write() {
                    Ok(mut keys) => *keys = set,
                    Err(poisoned) => *poisoned.into_inner() = set,
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the keys fetched before");
                false
            }
        }
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            this.refetch().await;
        });
    }
}

fn matching(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Vec<VerifyingKey> {
    set.keys
        .iter()
        .filter(|key| key.allows(alg) && (kid.is_none() || key.kid.as_deref() == kid))
        .cloned()
        .collect()
}

/// The usable keys of a JWKS document; keys rollcall cannot use are skipped (logged).
fn parse(body: &str) -> Result<Vec<VerifyingKey>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_str(body).map_err(|e| JwksError::Invalid(e.to_string()))?;
    let mut keys = Vec::with_capacity(document.keys.len());
    for raw in document.keys {
        let key = serde_json::from_value::<Jwk>(raw)
            .map_err(|e| e.to_string())
            .and_then(|jwk| VerifyingKey::from_jwk(&jwk).map_err(|e| e.to_string()));
        match key {
            Ok(key) => keys.push(key),
            Err(e) => tracing::debug!(error = %e, "JWKS key skipped"),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A JWKS endpoint whose document the test sets (`None`: down), counting fetches.
    #[derive(Clone, Default)]
    struct Stand(Arc<(Mutex<Option<String>>, AtomicUsize)>);

    impl Stand {
        fn serve(&self, kids: &[&str]) {
            let keys: Vec<_> = kids
                .iter()
                .map(|kid| {
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
                })
                .collect();
            let document = serde_json::json!({ "keys": keys }).to_string();
            *self.0.0.lock().expect("lock") = Some(document);
        }

        fn down(&self) {
            *self.0.0.lock().expect("lock") = None;
        }

        fn fetches(&self) -> usize {
            self.0.1.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl JwksSource for Stand {
        async fn fetch(&self) -> Result<String, JwksError> {
            self.0.1.fetch_add(1, Ordering::SeqCst);
            let document = self.0.0.lock().expect("lock").clone();
            document.ok_or_else(|| JwksError::Unreachable("down".into()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let stand = Stand::default();
        stand.serve(&["a"]);
        let jwks = Jwks::new(stand.clone());
        let ed = Algorithm::EdDSA;
        assert!(jwks.fetch().await);
        assert_eq!(jwks.candidates(Some("a"), ed).await.len(), 1);
        assert_eq!(
            stand.fetches(),
            1,
            "the start-up fetch; a known kid does not fetch"
        );
        // The provider rotates to "b": the first token naming it fetches at once...
        stand.serve(&["a", "b"]);
        assert_eq!(jwks.candidates(Some("b"), ed).await.len(), 1);
        assert_eq!(stand.fetches(), 2);
        // ...but a flood of unknown kids fetches once per interval, not once per token.
        stand.serve(&["a", "b", "c"]);
        for _ in 0..50 {
            assert!(jwks.candidates(Some("zzz"), ed).await.is_empty());
        }
        assert_eq!(stand.fetches(), 2, "within 10 s of the last fetch: none");
        tokio::time::advance(REFETCH_INTERVAL - Duration::from_millis(1)).await;
        assert!(jwks.candidates(Some("c"), ed).await.is_empty());
        assert_eq!(
            stand.fetches(),
            2,
            "9.999 s after the last fetch: still none"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(jwks.candidates(Some("c"), ed).await.len(), 1);
        assert_eq!(stand.fetches(), 3, "10 s after: one");
        // Known kids never fetch.
        assert_eq!(jwks.candidates(Some("a"), ed).await.len(), 1);
        assert_eq!(stand.fetches(), 3);
        // A key of another algorithm family is no candidate.
        assert!(
            jwks.candidates(Some("a"), Algorithm::RS256)
                .await
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_served_stale_while_the_endpoint_is_down() {
        let stand = Stand::default();
        stand.serve(&["a"]);
        let jwks = Jwks::new(stand.clone());
        assert!(jwks.fetch().await, "the start-up fetch");
        stand.down();
        tokio::time::advance(MAX_AGE).await;
        // Old keys: still served at once; a background refresh tries, and fails.
        assert_eq!(jwks.candidates(Some("a"), Algorithm::EdDSA).await.len(), 1);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(stand.fetches(), 2, "the background refresh ran");
        assert_eq!(jwks.candidates(Some("a"), Algorithm::EdDSA).await.len(), 1);
        assert!(
            jwks.candidates(Some("b"), Algorithm::EdDSA)
                .await
                .is_empty()
        );
        assert_eq!(
            stand.fetches(),
            2,
            "an unknown kid right after: rate limited"
        );
    }
}
