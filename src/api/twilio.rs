//! Twilio's webhooks: delivery receipts (StatusCallback) and inbound SMS, both verified with
//! `X-Twilio-Signature`, the inbound ones answered as TwiML.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::ApiState;
use crate::domain::{mask_middle, MessageSid};
use crate::notify::inbound::Inbound;
use crate::store::{millis, Receipt, ReceiptEffect};

type Params = Vec<(String, String)>;

/// `POST /webhooks/sms/status`: `delivered`/`undelivered`/`failed` update the notice; a failed
/// SMS falls back to the customer's next channel.
pub async fn status(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    if let Err(refusal) = verify(&state, &uri, &headers, &params) {
        return refusal.into_response();
    }
    let get = |k: &str| param(&params, k);
    let (Some(sid), Some(status)) = (get("MessageSid"), get("MessageStatus")) else {
        return (
            StatusCode::BAD_REQUEST,
            "MessageSid and MessageStatus are required",
        )
            .into_response();
    };
    let now = millis(state.clock.now());
    let receipt = Receipt {
        notice: notice_of(&uri),
        sid,
        status,
        error_code: get("ErrorCode"),
    };
    match state.store.apply_receipt(&receipt, now).await {
        Ok(effect) => {
            if effect == ReceiptEffect::FallingBack {
                state.wake.notify_one();
            }
            tracing::info!(sid, status, ?effect, "SMS receipt");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an SMS receipt");
            // 5xx makes Twilio retry the callback later.
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The notice a status callback names (`notice=` in its query, added by the SMS channel).
/// Callbacks of messages sent before the daemon added it have none.
fn notice_of(uri: &Uri) -> Option<i64> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("notice="))
        .and_then(|id| id.parse().ok())
}

/// `POST /webhooks/sms/inbound`: STOP/START/STATUS/OUT or help, answered as TwiML. Each
/// message is acted on once, by its `MessageSid`: a repeat gets an empty answer.
pub async fn inbound(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    if let Err(refusal) = verify(&state, &uri, &headers, &params) {
        return refusal.into_response();
    }
    let get = |k: &str| param(&params, k);
    let (Some(from), Some(body)) = (get("From"), get("Body")) else {
        return (StatusCode::BAD_REQUEST, "From and Body are required").into_response();
    };
    let Some(sid) = get("MessageSid").and_then(|s| MessageSid::parse(s).ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "MessageSid is required (it tells a message delivered twice from a new one)",
        )
            .into_response();
    };
    if let Some(answered) = repeat_or_failure(&state, &sid).await {
        return answered;
    }
    let inbound = Inbound {
        store: &state.store,
        book: &state.book,
        templates: &state.templates,
        clock: &state.clock,
        dirty: &state.dirty,
    };
    match inbound.answer(from, body).await {
        Ok(reply) => {
            tracing::info!(from = %mask_middle(from, 3, 2), keyword = ?reply.keyword, "inbound SMS");
            twiml(&reply.text)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot answer an inbound SMS");
            // Twilio retries on a 5xx; the retry must not be taken for a repeat.
            if let Err(e) = state.store.release_inbound(&sid).await {
                tracing::error!(
                    error = %e,
                    sid = sid.as_str(),
                    "cannot release an unanswered inbound SMS; its retry will be ignored"
                );
            }
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Claims the message: `None` the first time, else the answer to give at once: an empty
/// TwiML when it was acted on before (so no second reply goes out either), 503 when the claim
/// cannot be recorded (Twilio retries).
async fn repeat_or_failure(state: &ApiState, sid: &MessageSid) -> Option<Response> {
    match state
        .store
        .claim_inbound(sid, millis(state.clock.now()))
        .await
    {
        Ok(true) => None,
        Ok(false) => {
            tracing::info!(
                sid = sid.as_str(),
                "inbound SMS seen before (a retry or a replay); not acted on again"
            );
            Some(twiml_silent())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an inbound SMS");
            Some(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

/// The first value of form parameter `key`.
fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Why a webhook was refused, as its response.
type Refusal = (StatusCode, &'static str);

/// Refuses a request whose signature is missing or wrong (403, with the reason).
fn verify(
    state: &ApiState,
    uri: &Uri,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(), Refusal> {
    let refuse = |why: &'static str| {
        tracing::warn!(path = uri.path(), why, "webhook refused");
        Err((StatusCode::FORBIDDEN, why))
    };
    if state.sms_auth_token.is_empty() {
        return refuse("SMS webhooks are disabled: channels.sms.auth_token is not set");
    }
    let Some(given) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return refuse("missing X-Twilio-Signature");
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = if state.public_url.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        format!("http://{host}{path}")
    } else {
        format!("{}{path}", state.public_url.trim_end_matches('/'))
    };
    let want = signature(state.sms_auth_token.expose(), &url, params);
    // Constant-time comparison: the MAC check is the authentication.
    let same = given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        refuse("X-Twilio-Signature does not match")
    }
}

/// Twilio's signature: base64 of HMAC-SHA1 over the full URL followed by every POST parameter
/// name and value, sorted by name, keyed with the auth token.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// TwiML that sends no reply.
fn twiml_silent() -> Response {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn twiml(text: &str) -> Response {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{escaped}</Message></Response>"
    );
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's documented example, computed independently (Python's hmac module).
    #[test]
    fn signature_matches_twilios_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
