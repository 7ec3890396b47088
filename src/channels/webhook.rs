//! A generic JSON webhook: the utility's own app backend or another system receives every
//! notice and delivers it its own way.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{http, ChannelError, Outbound};
use crate::config::WebhookSettings;

/// Posts notices as JSON with an `Idempotency-Key` (the notice id): a receiver that sees the
/// same key twice (our retry after a lost answer) can drop the copy.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    clients: http::Clients,
    url: reqwest::Url,
    secret: Option<String>,
}

impl WebhookChannel {
    pub fn new(s: &WebhookSettings) -> Result<Self, super::SetupError> {
        Ok(Self {
            clients: http::Clients::new(s.timeout_secs, s.http2_connections)?,
            url: http::endpoint("channels.webhook.url", &s.url)?,
            secret: (!s.secret.is_empty()).then(|| s.secret.expose().to_owned()),
        })
    }

    /// Sends one notice; the receiver's `id` from a JSON answer, else the notice id.
    pub async fn send(&self, n: &Outbound) -> Result<String, ChannelError> {
        let body = json!({
            "notice_id": n.notice_id,
            "customer_id": n.customer_id,
            "fault_id": n.fault_id,
            "kind": n.kind,
            "channel": n.channel.as_str(),
            "address": n.address,
            "language": n.language,
            "title": n.title,
            "body": n.body,
        })
        .to_string();
        let mut request = self
            .clients
            .next()
            .post(self.url.clone())
            .header("Idempotency-Key", n.notice_id.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header("X-Faultline-Signature", sign(secret, body.as_bytes()));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| http::unreachable("webhook", e))?;
        if let Some(e) = http::transient_status("webhook", &response) {
            return Err(e);
        }
        let status = response.status();
        if !status.is_success() {
            return Err(ChannelError::Permanent(format!("webhook said {status}")));
        }
        let id = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)));
        Ok(id.unwrap_or_else(|| format!("webhook-{}", n.notice_id)))
    }
}

/// `sha256=<hex>` of the body keyed with the shared secret, as GitHub-style receivers expect.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!(
        "sha256={}",
        crate::domain::hex(&mac.finalize().into_bytes())
    )
}
