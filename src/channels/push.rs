//! App push over Firebase Cloud Messaging HTTP v1.

use serde::{Deserialize, Serialize};

use super::oauth::TokenSource;
use super::{http, ChannelError, Outbound};
use crate::config::PushSettings;

/// An FCM HTTP v1 sender.
#[derive(Debug)]
pub struct PushChannel {
    clients: http::Clients,
    url: reqwest::Url,
    auth: Auth,
}

/// Where the bearer token comes from.
#[derive(Debug)]
enum Auth {
    /// `channels.push.token`: a static token, or one a relay keeps fresh.
    Static(String),
    /// `channels.push.service_account_file`: minted and renewed by the daemon.
    ServiceAccount(TokenSource),
}

/// The `messages:send` request. Typed rather than a `json!` tree: a tree is a map allocated
/// per key for each of a million notices, only to be serialised and dropped.
#[derive(Serialize)]
struct Send<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    notification: Notification<'a>,
    data: Data<'a>,
    android: Android,
}

#[derive(Serialize)]
struct Notification<'a> {
    title: &'a str,
    body: &'a str,
}

/// FCM's data payload: string values only.
#[derive(Serialize)]
struct Data<'a> {
    fault_id: &'a str,
    kind: &'a str,
    notice_id: &'a str,
}

#[derive(Serialize)]
struct Android {
    priority: &'static str,
}

#[derive(Deserialize)]
struct Accepted {
    name: String,
}

/// FCM's error document: `{"error": {"code", "message", "status", "details": [{"errorCode"}]}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "errorCode", default)]
    error_code: String,
}

impl PushChannel {
    pub fn new(s: &PushSettings) -> Result<Self, super::SetupError> {
        let auth = if s.service_account_file.is_empty() {
            Auth::Static(s.token.expose().to_owned())
        } else {
            // A token an hour: HTTP/1.1 to whatever the key file names as its token endpoint.
            Auth::ServiceAccount(TokenSource::from_file(
                &s.service_account_file,
                http::client(s.timeout_secs)?,
            )?)
        };
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            s.base_url.trim_end_matches('/'),
            s.project_id
        );
        Ok(Self {
            clients: http::Clients::new(s.timeout_secs, s.http2_connections)?,
            url: http::endpoint("channels.push.base_url", &url)?,
            auth,
        })
    }

    /// Sends one push message; FCM's message name on success.
    pub async fn send(&self, n: &Outbound) -> Result<String, ChannelError> {
        let notice_id = n.notice_id.to_string();
        let body = Send {
            message: Message {
                token: &n.address,
                notification: Notification {
                    title: &n.title,
                    body: &n.body,
                },
                data: Data {
                    fault_id: &n.fault_id,
                    kind: &n.kind,
                    notice_id: &notice_id,
                },
                android: Android { priority: "high" },
            },
        };
        let token = match &self.auth {
            Auth::Static(token) => token.clone(),
            Auth::ServiceAccount(source) => source.token().await?,
        };
        let response = self
            .clients
            .next()
            .post(self.url.clone())
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::unreachable("push provider", e))?;
        if let Some(e) = http::transient_status("push provider", &response) {
            return Err(e);
        }
        let status = response.status();
        if status.is_success() {
            let accepted: Accepted = response.json().await.map_err(|e| {
                ChannelError::transient(format!("push provider answered without a name: {e}"))
            })?;
            return Ok(accepted.name);
        }
        let error = response.json::<ErrorBody>().await.unwrap_or_default().error;
        let codes: Vec<&str> = std::iter::once(error.status.as_str())
            .chain(error.details.iter().map(|d| d.error_code.as_str()))
            .collect();
        let dead_token = (status.as_u16() == 404 && codes.contains(&"UNREGISTERED"))
            || (status.as_u16() == 400 && codes.contains(&"INVALID_ARGUMENT"));
        let reason = format!("push {status} {}: {}", error.status, error.message);
        if dead_token {
            Err(ChannelError::DeadContact(reason))
        } else {
            // 401/403 and the like: our credentials, not the customer's token.
            Err(ChannelError::Permanent(reason))
        }
    }
}
