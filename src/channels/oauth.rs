//! Access tokens for FCM from a Google service account (the OAuth2 JWT-bearer grant): a JWT
//! signed with the account's private key is exchanged for a bearer token, cached until shortly
//! before it expires.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::ChannelError;

/// The scope FCM HTTP v1 requires.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Tokens are renewed this long before they expire, so none expires in flight.
const RENEW_EARLY: Duration = Duration::from_secs(120);

/// Why a service-account file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("cannot read the service-account file: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a service-account key file: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the service account's private key is not an RSA PEM key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
}

/// The fields of a Google service-account key file that the grant needs.
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// Mints and caches bearer tokens for one service account.
pub struct TokenSource {
    client: reqwest::Client,
    client_email: String,
    key: EncodingKey,
    key_id: Option<String>,
    token_uri: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Reads a service-account key file (the JSON Google issues).
    pub fn from_file(path: &str, client: reqwest::Client) -> Result<Self, ServiceAccountError> {
        let file: KeyFile = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        Ok(Self {
            client,
            key: EncodingKey::from_rsa_pem(file.private_key.as_bytes())?,
            key_id: file.private_key_id,
            client_email: file.client_email,
            token_uri: file.token_uri,
            cached: Mutex::new(None),
        })
    }

    /// A valid bearer token, from the cache or freshly minted. Holding the lock while minting
    /// means a burst of sends asks for one token, not hundreds.
    pub async fn token(&self) -> Result<String, ChannelError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.mint().await?;
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_EARLY);
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }

    async fn mint(&self) -> Result<(String, Duration), ChannelError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| ChannelError::Permanent(format!("cannot sign the token request: {e}")))?;
        let response = self
            .client
            .post(&self.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| super::http::unreachable("token endpoint", e))?;
        let status = response.status();
        if !status.is_success() {
            // A refused grant is our configuration, not the customer's contact; retrying later
            // keeps the notices for when it is fixed.
            return Err(ChannelError::transient(format!(
                "token endpoint said {status}"
            )));
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            ChannelError::transient(format!("token endpoint answered without a token: {e}"))
        })?;
        Ok((answer.access_token, Duration::from_secs(answer.expires_in)))
    }
}
