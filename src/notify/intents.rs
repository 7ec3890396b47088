//! Which notices an outage change calls for. Pure: the change and the book in, episode rows
//! and notice intents out, written in the same transaction as the change itself.

use std::collections::HashSet;

use chrono::Duration;

use crate::ingest::event::EventKind;
use crate::mapping::CustomerIdx;
use crate::outage::{ChangeCause, FaultState, MemberState, OutageBook, OutageChange};
use crate::store::{millis, BatchWrite, EpisodeEnd, EpisodeStart, NoticeIntent, Suppression};

/// Episodes and notice intents for a change: one outage notice per episode, due after the
/// momentary delay; one restoration notice when the episode ends, unless it was momentary,
/// in which case the queued outage notice is suppressed instead. Critical customers come
/// first (priority 0), then outage notices (1), then the rest (2).
pub fn plan(
    change: &OutageChange,
    book: &OutageBook,
    etr_change: Duration,
    write: &mut BatchWrite,
) {
    let customer = |c: u32| book.index().get(c);
    let delay = book.momentary_delay();
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
            due_at: millis(started + delay),
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
        if change.at - started < delay {
            momentary.push((id, start));
            continue;
        }
        write.notices.push(NoticeIntent {
            customer_id: id,
            episode_started_at: start,
            kind: "restored",
            variant: String::new(),
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
    plan_etr_update(change, book, etr_change, write);
    plan_planned_cancelled(change, book, write);
}

/// An `etr_update` for every customer this fault holds out, when an open fault's ETR appears
/// or moves by at least `etr_change` from the previous one. Customers who went out in this
/// very change are left out: their outage notice carries the ETR.
fn plan_etr_update(
    change: &OutageChange,
    book: &OutageBook,
    etr_change: Duration,
    write: &mut BatchWrite,
) {
    let Some(fault) = book.fault(&change.fault_id) else {
        return;
    };
    let (Some(etr), true) = (fault.etr, change.etr_changed) else {
        return;
    };
    let significant = change
        .previous_etr
        .is_none_or(|prev| (etr - prev).abs() >= etr_change);
    if fault.state != FaultState::Active
        || change.cause == ChangeCause::Event(EventKind::Detected)
        || !significant
    {
        return;
    }
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
            variant: millis(etr).to_string(),
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
