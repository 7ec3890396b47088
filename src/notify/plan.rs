//! Which channel a notice goes out on, from the customer's preferences.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::{Channel, Email, Phone, QuietHours};

/// What delivery needs to know about a customer.
#[derive(Debug, Clone)]
pub struct Contact {
    pub customer_id: String,
    pub name: String,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub push_token: Option<String>,
    pub language: String,
    /// Preferred channels in order; empty means opted out.
    pub channels: Vec<Channel>,
    pub timezone: Tz,
    pub critical: bool,
    pub quiet_hours: Option<QuietHours>,
}

/// When a notice that must respect quiet hours may go out: `None` for now, or the end of the
/// customer's current quiet period. Outage and restoration notices wait unless the customer or
/// the fault is critical; other kinds always wait.
pub fn quiet_until(
    contact: &Contact,
    kind: &str,
    critical_fault: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let quiet = contact.quiet_hours?;
    let urgent_kind = matches!(kind, "outage" | "restored");
    if urgent_kind && (contact.critical || critical_fault) {
        return None;
    }
    let local = now.with_timezone(&contact.timezone);
    let t = local.time();
    let inside = if quiet.start <= quiet.end {
        t >= quiet.start && t < quiet.end
    } else {
        t >= quiet.start || t < quiet.end // wraps past midnight
    };
    if !inside {
        return None;
    }
    let end_day = if quiet.start > quiet.end && t >= quiet.start {
        local.date_naive().succ_opt()?
    } else {
        local.date_naive()
    };
    // A daylight-saving gap can remove the end time; the earliest valid instant after it will do.
    let end = end_day.and_time(quiet.end);
    contact
        .timezone
        .from_local_datetime(&end)
        .earliest()
        .or_else(|| {
            contact
                .timezone
                .from_local_datetime(&(end + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The decision for one notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Send on `channel` to `address` (phone, e-mail or push token).
    Send { channel: Channel, address: String },
    /// The customer opted out of notices.
    OptedOut,
    /// No enabled channel has a contact for the customer.
    Unreachable,
}

/// Order tried for critical customers who opted out: SMS reaches most phones, including ones
/// without the app.
const CRITICAL_ORDER: [Channel; 3] = [Channel::Sms, Channel::Push, Channel::Email];

/// The customer's first preferred channel that is enabled and has a contact. A critical
/// customer who opted out is still reached when `critical_override` is on (the documented
/// default), on the first reachable channel of SMS, push, e-mail.
pub fn choose(contact: &Contact, enabled: &[Channel], critical_override: bool) -> Choice {
    let order: &[Channel] = if !contact.channels.is_empty() {
        &contact.channels
    } else if contact.critical && critical_override {
        &CRITICAL_ORDER
    } else {
        return Choice::OptedOut;
    };
    order
        .iter()
        .filter(|c| enabled.contains(c))
        .find_map(|&channel| {
            address(contact, channel).map(|address| Choice::Send { channel, address })
        })
        .unwrap_or(Choice::Unreachable)
}

fn address(contact: &Contact, channel: Channel) -> Option<String> {
    match channel {
        Channel::Sms => contact.phone.as_ref().map(|p| p.as_str().to_owned()),
        Channel::Email => contact.email.as_ref().map(|e| e.as_str().to_owned()),
        Channel::Push => contact.push_token.clone().filter(|t| !t.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(channels: Vec<Channel>, critical: bool) -> Contact {
        Contact {
            customer_id: "C1".into(),
            name: "A".into(),
            phone: Some(Phone::parse("+4915161973069").unwrap()),
            email: None,
            push_token: None,
            language: "de".into(),
            channels,
            timezone: Tz::Europe__Berlin,
            critical,
            quiet_hours: Some("22:00-07:00".parse().unwrap()),
        }
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_spare_critical_cases() {
        let night: DateTime<Utc> = "2026-11-23T23:30:00Z".parse().unwrap(); // 00:30 in Berlin
        let c = contact(vec![Channel::Sms], false);
        let until = quiet_until(&c, "outage", false, night).unwrap();
        assert_eq!(
            until,
            "2026-11-24T06:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "07:00 Berlin"
        );
        let evening: DateTime<Utc> = "2026-11-23T21:30:00Z".parse().unwrap(); // 22:30 in Berlin
        assert_eq!(quiet_until(&c, "restored", false, evening), Some(until));
        assert_eq!(
            quiet_until(&c, "outage", true, night),
            None,
            "a critical fault does not wait"
        );
        assert_eq!(
            quiet_until(&contact(vec![], true), "outage", false, night),
            None,
            "nor a critical customer"
        );
        let noon: DateTime<Utc> = "2026-11-23T11:00:00Z".parse().unwrap();
        assert_eq!(quiet_until(&c, "outage", false, noon), None);
    }

    #[test]
    fn preference_order_skips_channels_without_contact_or_transport() {
        let all = [Channel::Push, Channel::Sms, Channel::Email];
        let c = contact(vec![Channel::Push, Channel::Sms], false);
        assert!(matches!(
            choose(&c, &all, true),
            Choice::Send {
                channel: Channel::Sms,
                ..
            }
        ));
        assert_eq!(choose(&c, &[Channel::Email], true), Choice::Unreachable);
    }

    #[test]
    fn opted_out_critical_customers_are_reached_by_policy() {
        let all = [Channel::Push, Channel::Sms, Channel::Email];
        assert_eq!(
            choose(&contact(vec![], false), &all, true),
            Choice::OptedOut
        );
        assert!(matches!(
            choose(&contact(vec![], true), &all, true),
            Choice::Send {
                channel: Channel::Sms,
                ..
            }
        ));
        assert_eq!(
            choose(&contact(vec![], true), &all, false),
            Choice::OptedOut
        );
    }
}
