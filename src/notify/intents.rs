//! Which notices an outage change calls for. Pure: the change and the book in, episode rows
//! and notice intents out, written in the same transaction as the change itself.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use super::supersede::EtrUpdate;
use crate::mapping::CustomerIdx;
use crate::outage::{EtrNews, FaultState, MemberState, OutageBook, OutageChange};
use crate::store::{millis, BatchWrite, EpisodeEnd, EpisodeStart, NoticeIntent, Suppression};

/// When outage notices fall due, besides the book's momentary delay (`notify.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    /// `critical_momentary_delay_secs`: the momentary window of critical customers' notices.
    pub critical: std::time::Duration,
    /// `late_event_wait_secs`: how long an outage the daemon learns of after its momentary
    /// window has passed still waits for a restoration that may follow it.
    pub late_event: std::time::Duration,
}

/// The variant of a restoration notice whose outage proved momentary: it goes out only if the
/// episode's outage notice went out, or may have ([`super::supersede`]).
pub const MOMENTARY: &str = "momentary";

/// How much sooner than its window an outage notice is taken as possibly due when a momentary
/// restoration is planned: `now` is read as the batch begins, seconds before it commits, and
/// another daemon's clock may run a little ahead. Only trips within this margin of their window
/// write a restoration row that delivery then suppresses.
const DUE_MARGIN_SECS: i64 = 60;

/// Episodes and notice intents for a change: one outage notice per episode, due once the
/// momentary window has passed; one restoration notice when the episode ends. A momentary
/// episode's queued outage notice is suppressed instead, and its restoration notice is
/// recorded only where the outage notice may already have gone out. Critical customers come
/// first (priority 0), then outage notices (1), then the rest (2).
///
/// `now` is when the daemon learned of the change. An outage notice is due when the momentary
/// window has passed since the outage began (grid time), and no sooner than
/// `delays.late_event` (at most the window) after `now`: an event that arrives late (an OMS
/// catching up after a storm) leaves its restoration a moment to arrive before anyone is told,
/// instead of making every late momentary trip a pair of notices. Critical customers' window
/// is `delays.critical` instead of the book's momentary delay.
pub fn plan(
    change: &OutageChange,
    book: &OutageBook,
    delays: Delays,
    now: DateTime<Utc>,
    write: &mut BatchWrite,
) {
    let customer = |c: u32| book.index().get(c);
    let duration = |d| Duration::from_std(d).unwrap_or(Duration::MAX);
    let (critical, late) = (duration(delays.critical), duration(delays.late_event));
    let window = |c: u32| {
        if customer(c).critical {
            critical
        } else {
            book.momentary_delay()
        }
    };
    let due = |c: u32, started: DateTime<Utc>| {
        let after_start = started.checked_add_signed(window(c)).unwrap_or(now);
        // With no wait after learning, a window that passed before we knew is due now: left
        // in the past, it keeps the order in which the outages began.
        match late.min(window(c)) {
            wait if wait > Duration::zero() => {
                millis(after_start.max(now.checked_add_signed(wait).unwrap_or(now)))
            }
            _ => millis(after_start),
        }
    };
    let (at, fault_id) = (millis(change.at), change.fault_id.as_str());
    for &(c, started) in &change.episodes_started {
        let (id, start) = (customer(c).id.as_str().to_owned(), millis(started));
        let starts = EpisodeStart {
            customer_id: id.clone(),
            started_at: start,
            fault_id: fault_id.to_owned(),
        };
        write.episode_starts.push(starts);
        write.notices.push(NoticeIntent {
            customer_id: id,
            episode_started_at: start,
            kind: "outage",
            variant: String::new(),
            fault_id: fault_id.to_owned(),
            priority: if customer(c).critical { 0 } else { 1 },
            due_at: due(c, started),
        });
    }
    let mut momentary = Vec::new();
    for &(c, started) in &change.episodes_ended {
        let (id, start) = (customer(c).id.as_str().to_owned(), millis(started));
        let end = EpisodeEnd {
            customer_id: id.clone(),
            ended_at: at,
        };
        write.episode_ends.push(end);
        let variant = if change.at - started < book.momentary_delay() {
            momentary.push((id.clone(), start));
            // The outage notice falls due no sooner than `started + window`: well before that
            // it is still queued, and the suppression below is the whole story.
            if now - started + Duration::seconds(DUE_MARGIN_SECS) < window(c) {
                continue;
            }
            MOMENTARY
        } else {
            ""
        };
        write.notices.push(NoticeIntent {
            customer_id: id,
            episode_started_at: start,
            kind: "restored",
            variant: variant.to_owned(),
            fault_id: fault_id.to_owned(),
            priority: if customer(c).critical { 0 } else { 2 },
            due_at: at,
        });
    }
    if !momentary.is_empty() {
        let suppression = Suppression {
            pairs: momentary,
            kind: "outage",
            reason: "momentary",
        };
        write.suppressions.push(suppression);
    }
    plan_etr_update(change, book, write);
    plan_planned_cancelled(change, book, write);
}

/// An `etr_update` for every customer this fault holds out, when the change makes its ETR news
/// ([`EtrNews`]): variant the announced ETR (epoch ms), or `withdrawn:` and the ETR withdrawn,
/// then `@` and the change's time, so that an ETR announced again in the same episode
/// (18:00, withdrawn, 18:00) is a notice of its own and not a conflict with the first.
/// Customers who went out in this very change are left out: their outage notice carries it.
fn plan_etr_update(change: &OutageChange, book: &OutageBook, write: &mut BatchWrite) {
    let (Some(fault), Some(news)) = (book.fault(&change.fault_id), change.etr_news) else {
        return;
    };
    if fault.state != FaultState::Active {
        return;
    }
    let update = match news {
        EtrNews::Estimate(etr) => EtrUpdate::Estimate(millis(etr)),
        EtrNews::Withdrawn { was } => EtrUpdate::Withdrawn(millis(was)),
    };
    let variant = update.variant(Some(millis(change.at)));
    let fresh: HashSet<CustomerIdx> = change.now_out.iter().copied().collect();
    for &c in fault.affected.iter().filter(|c| !fresh.contains(c)) {
        let Some(start) = book.episode_of(c) else {
            continue;
        };
        let customer = book.index().get(c);
        write.notices.push(NoticeIntent {
            customer_id: customer.id.as_str().to_owned(),
            episode_started_at: millis(start),
            kind: "etr_update",
            variant: variant.clone(),
            fault_id: change.fault_id.as_str().to_owned(),
            priority: if customer.critical { 0 } else { 2 },
            due_at: millis(change.at),
        });
    }
}

/// A `planned_cancelled` for every customer of a cancelled planned outage; delivery sends it
/// only to those whose advance notice went out.
fn plan_planned_cancelled(change: &OutageChange, book: &OutageBook, write: &mut BatchWrite) {
    let starts_at = book.fault(&change.fault_id).and_then(|f| f.starts_at);
    let (Some(starts_at), MemberState::Cancelled) = (starts_at, change.left_state) else {
        return;
    };
    for &c in &change.left {
        let customer = book.index().get(c);
        write.notices.push(NoticeIntent {
            customer_id: customer.id.as_str().to_owned(),
            episode_started_at: millis(starts_at),
            kind: "planned_cancelled",
            variant: String::new(),
            fault_id: change.fault_id.as_str().to_owned(),
            priority: if customer.critical { 0 } else { 2 },
            due_at: millis(change.at),
        });
    }
}
