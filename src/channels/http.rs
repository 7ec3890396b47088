//! What the HTTP channels (SMS, push, webhook) share: one client setup and the reading of
//! `Retry-After`.

use std::time::Duration;

use super::ChannelError;

/// A client with the channel's timeout; rustls, so no system OpenSSL is needed.
pub fn client(timeout_secs: u64) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()
}

/// A provider's endpoint, parsed once when the channel is set up: reqwest would otherwise
/// parse the URL string again for every request (2 % of a million-notice fan-out's CPU).
pub fn endpoint(key: &'static str, url: &str) -> Result<reqwest::Url, super::SetupError> {
    reqwest::Url::parse(url).map_err(|e| super::SetupError::Url {
        key,
        reason: e.to_string(),
    })
}

/// A request that never got an answer: worth retrying. The reason goes down the error's
/// causes, because reqwest's own words ("error sending request") do not say whether the
/// connection was refused, timed out or failed a certificate check. The URL is left out
/// because some providers put account ids in it.
pub fn unreachable(what: &str, e: reqwest::Error) -> ChannelError {
    let e = e.without_url();
    let mut reason = format!("{what} unreachable: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        // Wrappers often repeat the words of what they wrap.
        let words = c.to_string();
        if !reason.contains(&words) {
            reason.push_str(": ");
            reason.push_str(&words);
        }
        cause = c.source();
    }
    ChannelError::transient(reason)
}

/// 429 and 5xx mean "later"; the provider's `Retry-After` (seconds) is honoured.
pub fn transient_status(what: &str, response: &reqwest::Response) -> Option<ChannelError> {
    let status = response.status();
    (status.as_u16() == 429 || status.is_server_error()).then(|| ChannelError::Transient {
        reason: format!("{what} said {status}"),
        retry_after: retry_after(response),
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these providers and ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_endpoint_says_why() {
        // Nothing listens on port 1 of the loopback: the connection is refused.
        let e = client(5)
            .unwrap()
            .post("http://127.0.0.1:1/secret-account/Messages.json")
            .send()
            .await
            .unwrap_err();
        let reason = unreachable("SMS provider", e).to_string();
        assert!(reason.contains("SMS provider unreachable: "), "{reason}");
        assert!(reason.contains("refused"), "{reason}");
        assert!(!reason.contains("secret-account"), "{reason}");
    }
}
