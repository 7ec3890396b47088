//! What the HTTP channels (SMS, push, webhook) share: one client setup and the reading of
//! `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ChannelError;

/// An HTTP/1.1 client with the channel's timeout; rustls, so no system OpenSSL is needed.
pub fn client(timeout_secs: u64) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout_secs).http1_only().build()
}

fn builder(timeout_secs: u64) -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(timeout_secs.max(1)))
}

/// A channel's way to its provider: HTTP/1.1, a connection per request in flight (the
/// default), or HTTP/2 over a fixed number of connections, each carrying many requests at
/// once.
///
/// HTTP/2 is what FCM recommends for sending many messages, and it is cheaper for us: a
/// connection's requests share its reads and writes, where HTTP/1.1 pays a `writev` and a
/// `recv` or two per request (the fan-out bench made a quarter fewer system calls and used
/// 9–16 % less CPU, docs/performance-history.md).
/// Several connections, because a server caps the requests in flight on one (its
/// `SETTINGS_MAX_CONCURRENT_STREAMS`, often 100) and reqwest opens no second connection when
/// that cap is reached: with 100 streams and 50 ms of latency one connection carries 2,000
/// requests a second. Each connection is a client of its own, taken in turn.
#[derive(Debug, Clone)]
pub struct Clients {
    clients: Arc<[reqwest::Client]>,
    turn: Arc<AtomicUsize>,
}

impl Clients {
    /// `http2_connections` 0: HTTP/1.1. Above 0: HTTP/2 only, over that many connections;
    /// negotiated by ALPN on `https://` (a server without HTTP/2 is refused), spoken from the
    /// first byte on `http://` (h2c, "prior knowledge").
    pub fn new(timeout_secs: u64, http2_connections: u32) -> Result<Self, reqwest::Error> {
        let clients = if http2_connections == 0 {
            vec![client(timeout_secs)?]
        } else {
            (0..http2_connections)
                .map(|_| {
                    builder(timeout_secs)
                        .http2_prior_knowledge()
                        // A connection idle behind a NAT or firewall can die without a word;
                        // pings find that out before a burst of notices is lost on it.
                        .http2_keep_alive_interval(Duration::from_secs(30))
                        .http2_keep_alive_timeout(Duration::from_secs(10))
                        .build()
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            clients: clients.into(),
            turn: Arc::default(),
        })
    }

    /// The client for the next request.
    pub fn next(&self) -> &reqwest::Client {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.clients[turn % self.clients.len()]
    }
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

    #[test]
    fn http2_requests_take_the_connections_in_turn() {
        let h2 = Clients::new(5, 3).unwrap();
        assert_eq!(h2.clients.len(), 3);
        let first: *const reqwest::Client = h2.next();
        let turns: Vec<*const reqwest::Client> = (0..6).map(|_| h2.next() as *const _).collect();
        assert_ne!(turns[0], turns[1]);
        assert_ne!(turns[1], turns[2]);
        assert_eq!(
            turns[2], first,
            "the fourth request takes the first connection again"
        );
        assert_eq!(turns[0], turns[3]);
        assert_eq!(
            Clients::new(5, 0).unwrap().clients.len(),
            1,
            "HTTP/1.1: one pooled client"
        );
    }
}
