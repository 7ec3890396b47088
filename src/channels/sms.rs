//! SMS over the Twilio Programmable Messaging API (and the many carriers that clone it).

use serde::Deserialize;

use super::{http, ChannelError, Outbound};
use crate::config::SmsSettings;

/// Twilio error codes that mean this number will not take SMS from us.
const PERMANENT_CODES: [(u64, &str); 3] = [
    (21211, "invalid phone number"),
    (21610, "the recipient replied STOP"),
    (21614, "not a mobile number"),
];

/// The status callback for one notice: `channels.sms.status_callback` with the notice's id
/// added (`notice=`), so its receipt finds the notice by primary key. Twilio signs the URL
/// with its query, so the id cannot be forged.
fn callback_for(base: &str, notice_id: i64) -> String {
    let joint = if base.contains('?') { '&' } else { '?' };
    format!("{base}{joint}notice={notice_id}")
}

/// A Twilio-compatible SMS sender.
#[derive(Debug, Clone)]
pub struct SmsChannel {
    clients: http::Clients,
    url: reqwest::Url,
    account_sid: String,
    auth_token: String,
    from: String,
    status_callback: Option<String>,
}

#[derive(Deserialize)]
struct Accepted {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<u64>,
    message: Option<String>,
}

impl SmsChannel {
    pub fn new(s: &SmsSettings) -> Result<Self, super::SetupError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            s.base_url.trim_end_matches('/'),
            s.account_sid
        );
        Ok(Self {
            clients: http::Clients::new(s.timeout_secs, s.http2_connections)?,
            url: http::endpoint("channels.sms.base_url", &url)?,
            account_sid: s.account_sid.clone(),
            auth_token: s.auth_token.expose().to_owned(),
            from: s.from.clone(),
            status_callback: (!s.status_callback.is_empty()).then(|| s.status_callback.clone()),
        })
    }

    /// Sends one SMS; the provider's message sid on success.
    pub async fn send(&self, n: &Outbound) -> Result<String, ChannelError> {
        let callback = self
            .status_callback
            .as_deref()
            .map(|cb| callback_for(cb, n.notice_id));
        let mut form = vec![
            ("To", n.address.as_str()),
            ("From", self.from.as_str()),
            ("Body", n.body.as_str()),
        ];
        if let Some(cb) = &callback {
            form.push(("StatusCallback", cb.as_str()));
        }
        let response = self
            .clients
            .next()
            .post(self.url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| http::unreachable("SMS provider", e))?;
        if let Some(e) = http::transient_status("SMS provider", &response) {
            return Err(e);
        }
        let status = response.status();
        if status.is_success() {
            let accepted: Accepted = response.json().await.map_err(|e| {
                ChannelError::transient(format!("SMS provider answered without a sid: {e}"))
            })?;
            return Ok(accepted.sid);
        }
        let error: Option<TwilioError> = response.json().await.ok();
        let code = error.as_ref().and_then(|e| e.code);
        let known = PERMANENT_CODES
            .iter()
            .find(|(c, _)| Some(*c) == code)
            .map(|(_, why)| *why);
        let detail = known
            .map(str::to_owned)
            .or_else(|| error.and_then(|e| e.message))
            .unwrap_or_else(|| "request refused".into());
        let reason = format!(
            "SMS {status} (code {}): {detail}",
            code.map_or("-".into(), |c| c.to_string())
        );
        if known.is_some() {
            Err(ChannelError::DeadContact(reason))
        } else {
            Err(ChannelError::Permanent(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::callback_for;

    #[test]
    fn a_callback_carries_the_notice_id() {
        assert_eq!(
            callback_for("https://u.example/webhooks/sms/status", 42),
            "https://u.example/webhooks/sms/status?notice=42"
        );
        assert_eq!(
            callback_for("https://u.example/webhooks/sms/status?site=north", 7),
            "https://u.example/webhooks/sms/status?site=north&notice=7"
        );
    }
}
