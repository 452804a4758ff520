//! Posting a signed body to the receiver. A trait, so that the deliverer's tests can stand in a
//! receiver that fails, stalls or records, under paused time.

use async_trait::async_trait;

use super::signature;

/// Why a POST got no answer.
#[derive(Debug, thiserror::Error)]
#[error("webhook request failed: {0}")]
pub struct TransportError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Sends one webhook body.
#[async_trait]
pub trait Transport: Send + Sync {
    /// POSTs `body` (JSON) with `signature` as its signature header; the answer's status.
    async fn post(&self, body: Vec<u8>, signature: String) -> Result<u16, TransportError>;
}

/// The receiver at a URL, over HTTP or HTTPS.
pub struct HttpTransport {
    client: reqwest::Client,
    url: String,
}

impl HttpTransport {
    pub fn new(url: &str) -> Result<HttpTransport, TransportError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("rollcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError(Box::new(e)))?;
        Ok(HttpTransport {
            client,
            url: url.to_owned(),
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, body: Vec<u8>, signature: String) -> Result<u16, TransportError> {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| TransportError(Box::new(e)))?;
        Ok(response.status().as_u16())
    }
}
