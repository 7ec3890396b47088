//! Customers' SMS replies: STOP, START, STATUS, OUT, or anything else (help).

use chrono_tz::Tz;
use tokio::sync::mpsc;

use super::templates::{Context, Templates};
use crate::clock::Clock;
use crate::domain::{CustomerId, FaultId, Phone};
use crate::shared::SharedBook;
use crate::store::{millis, Replier, Store, StoreError};

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
    Status,
    Out,
    /// A staff member accepts their dispatch.
    Yes,
    /// A staff member declines their dispatch.
    No,
    Help,
}

impl Keyword {
    /// The first word, case-insensitively; the STOP family is the carriers' standard list.
    pub fn parse(body: &str) -> Self {
        let word = body
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_uppercase();
        match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "END" | "QUIT" | "CANCEL" | "REVOKE"
            | "OPTOUT" => Self::Stop,
            "START" | "UNSTOP" => Self::Start,
            "STATUS" => Self::Status,
            "OUT" => Self::Out,
            "YES" | "JA" | "Y" => Self::Yes,
            "NO" | "NEIN" | "N" => Self::No,
            _ => Self::Help,
        }
    }
}

/// The answer to send back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub keyword: Keyword,
    pub text: String,
}

/// The shared parts an answer needs.
pub struct Inbound<'a> {
    pub store: &'a Store,
    pub book: &'a SharedBook,
    pub templates: &'a Templates,
    pub clock: &'a Clock,
    /// Told about faults that got a customer report, so their status is republished.
    pub dirty: &'a mpsc::UnboundedSender<FaultId>,
}

impl Inbound<'_> {
    /// Acts on a message from `from` and words the answer in the customer's language.
    pub async fn answer(&self, from: &str, body: &str) -> Result<Reply, StoreError> {
        let keyword = Keyword::parse(body);
        let reply = |language: &str, key: &str, ctx: Option<&Context<'_>>| Reply {
            keyword,
            text: self.templates.reply(language, key, ctx),
        };
        let Ok(phone) = Phone::parse(from) else {
            return Ok(reply("en", "unknown", None));
        };
        if matches!(keyword, Keyword::Yes | Keyword::No) {
            if let Some(answer) = self.staff_answer(&phone, keyword == Keyword::Yes).await? {
                return Ok(Reply {
                    keyword,
                    text: answer,
                });
            }
        }
        let customers = self.store.customers_by_phone(phone.as_str()).await?;
        let Some(first) = customers.first() else {
            return Ok(reply("en", "unknown", None));
        };
        let language = first.language.as_str();
        match keyword {
            Keyword::Stop => {
                self.store.set_sms_stopped(phone.as_str(), true).await?;
                Ok(reply(language, "stop", None))
            }
            Keyword::Start => {
                self.store.set_sms_stopped(phone.as_str(), false).await?;
                Ok(reply(language, "start", None))
            }
            // YES/NO from a customer (staff answers were handled above): help.
            Keyword::Help | Keyword::Yes | Keyword::No => Ok(reply(language, "help", None)),
            Keyword::Status => Ok(match self.outage(first) {
                Some(o) => reply(language, "status_out", Some(&o.context(first))),
                None => reply(language, "status_ok", None),
            }),
            Keyword::Out => {
                let now = millis(self.clock.now());
                let mut known = None;
                for c in &customers {
                    let outage = self.outage(c);
                    let fault = outage.as_ref().map(|o| o.fault_id.as_str());
                    self.store
                        .record_report(&c.customer_id, fault, "sms", now)
                        .await?;
                    if let Some(id) = fault.and_then(|f| FaultId::parse(f).ok()) {
                        let _ = self.dirty.send(id);
                    }
                    known = known.or(outage);
                }
                Ok(match known {
                    Some(o) => reply(language, "out_known", Some(&o.context(first))),
                    None => reply(language, "out_recorded", None),
                })
            }
        }
    }

    /// The customer's current outage, if the daemon knows of one.
    fn outage(&self, c: &Replier) -> Option<KnownOutage> {
        let book = self.book.read();
        let idx = book
            .index()
            .idx_of(&CustomerId::parse(&c.customer_id).ok()?)?;
        let since = book.episode_of(idx)?;
        let fault = book.faults_of(idx).first().and_then(|id| book.fault(id))?;
        Some(KnownOutage {
            fault_id: fault.id.as_str().to_owned(),
            since,
            etr: fault.etr,
            cause: fault.cause.clone(),
        })
    }
}

/// What STATUS and OUT tell a customer who is out.
struct KnownOutage {
    fault_id: String,
    since: chrono::DateTime<chrono::Utc>,
    etr: Option<chrono::DateTime<chrono::Utc>>,
    cause: String,
}

impl Inbound<'_> {
    /// A staff member's YES or NO to their dispatch, answered in their language; `None` when
    /// the number is not a staff member's.
    async fn staff_answer(
        &self,
        phone: &Phone,
        accept: bool,
    ) -> Result<Option<String>, StoreError> {
        let Some((staff, language)) = self.store.staff_by_phone(phone.as_str()).await? else {
            return Ok(None);
        };
        let now = millis(self.clock.now());
        let answered = self
            .store
            .answer_dispatch(&staff, accept, "sms", now)
            .await?;
        let text = match &answered {
            Some(slot) => {
                let _ = self.dirty.send(slot.fault.clone());
                let key = if accept { "reply_yes" } else { "reply_no" };
                self.templates
                    .dispatch_reply(&language, key, slot.fault.as_str())
            }
            None => self.templates.dispatch_reply(&language, "reply_none", ""),
        };
        Ok(Some(text))
    }
}

impl KnownOutage {
    fn context<'a>(&'a self, c: &'a Replier) -> Context<'a> {
        Context {
            name: &c.name,
            timezone: c.timezone.parse().unwrap_or(Tz::UTC),
            since: self.since,
            until: None,
            etr: self.etr,
            cause: &self.cause,
            dispatch: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(Keyword::parse("stop"), Keyword::Stop);
        assert_eq!(Keyword::parse(" Unsubscribe please"), Keyword::Stop);
        assert_eq!(Keyword::parse("STOPALL"), Keyword::Stop);
        assert_eq!(Keyword::parse("unstop"), Keyword::Start);
        assert_eq!(Keyword::parse("Status?"), Keyword::Status);
        assert_eq!(Keyword::parse("OUT"), Keyword::Out);
        assert_eq!(Keyword::parse("hello"), Keyword::Help);
        assert_eq!(Keyword::parse(""), Keyword::Help);
    }
}
