//! Coordinators' commands (`faultline staffing …`): look at the plan, pin, release, change a
//! person's status or position. Each write is audited; the daemon re-plans with it within
//! `staffing.replan_secs`.

use clap::Subcommand;

use super::callcenter::{agents, cover, CallCenterSettings, LanguageCover};
use super::plan::SlotKey;
use crate::domain::{Coord, FaultId, Skill, StaffId, StaffStatus};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum StaffingCommand {
    /// Print the current plan: every slot of every open fault, who fills it and why.
    Show,
    /// Keep a person on a slot whatever the solver says (moves them off any other pin).
    Pin {
        #[arg(long)]
        fault: String,
        #[arg(long)]
        skill: String,
        /// The slot's number among the fault's slots of that skill (1, 2, …).
        #[arg(long, default_value_t = 1)]
        index: u16,
        #[arg(long)]
        staff: String,
        /// Who decides (kept in the audit log).
        #[arg(long)]
        by: String,
        #[arg(long)]
        why: String,
    },
    /// Let the solver decide about a pinned person again.
    Release {
        #[arg(long)]
        staff: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        why: String,
    },
    /// The call-centre forecast per language of the customers out now: calls per hour,
    /// agents needed (Erlang C, Erlang A as the optimistic bound), who is on shift, which
    /// on-call agents to call in, and the gap that remains.
    Calls,
    /// Answer a dispatch on a person's behalf: accept.
    Accept {
        #[arg(long)]
        staff: String,
        #[arg(long)]
        by: String,
    },
    /// Answer a dispatch on a person's behalf: decline (they are not offered that fault again).
    Decline {
        #[arg(long)]
        staff: String,
        #[arg(long)]
        by: String,
    },
    /// A person has rested: their hours on assignment (the fatigue limit's count) restart.
    Rested {
        #[arg(long)]
        staff: String,
        #[arg(long)]
        by: String,
    },
    /// Change a person's status (on_shift, on_call, off_duty) and/or position.
    Set {
        #[arg(long)]
        staff: String,
        #[arg(long)]
        status: Option<String>,
        /// Where they are now, `lon,lat`.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        by: String,
        #[arg(long)]
        why: String,
    },
}

/// Runs one command against the database.
pub async fn run(
    store: &Store,
    cmd: StaffingCommand,
    call_center: &CallCenterSettings,
    now: i64,
) -> anyhow::Result<()> {
    match cmd {
        StaffingCommand::Show => show(store).await?,
        StaffingCommand::Calls => calls(store, call_center, now).await?,
        StaffingCommand::Pin {
            fault,
            skill,
            index,
            staff,
            by,
            why,
        } => {
            let slot = SlotKey {
                fault: FaultId::parse(&fault)?,
                skill: skill.parse::<Skill>()?,
                index,
            };
            let level = store.slot_min_level(&slot).await?.ok_or_else(|| {
                anyhow::anyhow!("{fault} has no {skill} slot #{index} in the plan")
            })?;
            store
                .pin(&slot, level, &StaffId::parse(&staff)?, &by, &why, now)
                .await?;
            println!("pinned {staff} to {fault} {skill} #{index}");
        }
        StaffingCommand::Release { staff, by, why } => {
            if store
                .release(&StaffId::parse(&staff)?, &by, &why, now)
                .await?
            {
                println!("released {staff}");
            } else {
                anyhow::bail!("{staff} has no pinned slot");
            }
        }
        StaffingCommand::Accept { staff, by } => answer(store, &staff, true, &by, now).await?,
        StaffingCommand::Decline { staff, by } => answer(store, &staff, false, &by, now).await?,
        StaffingCommand::Rested { staff, by } => {
            if !store.rested(&StaffId::parse(&staff)?, &by, now).await? {
                anyhow::bail!("no staff member {staff}");
            }
            println!("{staff} rested");
        }
        StaffingCommand::Set {
            staff,
            status,
            at,
            by,
            why,
        } => {
            let status = status.map(|s| s.parse::<StaffStatus>()).transpose()?;
            let at = at.map(|a| parse_at(&a)).transpose()?;
            if !store
                .update_staff(&StaffId::parse(&staff)?, status, at, &by, &why, now)
                .await?
            {
                anyhow::bail!("no staff member {staff}");
            }
            println!("updated {staff}");
        }
    }
    Ok(())
}

async fn answer(
    store: &Store,
    staff: &str,
    accept: bool,
    by: &str,
    now: i64,
) -> anyhow::Result<()> {
    match store
        .answer_dispatch(&StaffId::parse(staff)?, accept, by, now)
        .await?
    {
        Some(slot) => {
            let verb = if accept { "accepted" } else { "declined" };
            println!(
                "{staff} {verb} {} {} #{}",
                slot.fault.as_str(),
                slot.skill.as_str(),
                slot.index
            );
            Ok(())
        }
        None => anyhow::bail!("{staff} has no dispatch waiting for an answer"),
    }
}

fn parse_at(text: &str) -> anyhow::Result<Coord> {
    let (lon, lat) = text
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("--at takes lon,lat"))?;
    Ok(Coord::new(lon.trim().parse()?, lat.trim().parse()?)?)
}

/// The call-centre forecast and cover per language of the customers out now.
pub async fn forecast(
    store: &Store,
    s: &CallCenterSettings,
    now: i64,
) -> Result<Vec<LanguageCover>, crate::store::StoreError> {
    let loads = super::surge::loads(&store.customers_out_by_language().await?, now);
    let people: Vec<_> = store
        .staff_states()
        .await?
        .into_iter()
        .map(|s| s.record)
        .collect();
    Ok(cover(&loads, &agents(&people), s))
}

async fn calls(store: &Store, s: &CallCenterSettings, now: i64) -> anyhow::Result<()> {
    let covers = forecast(store, s, now).await?;
    if covers.is_empty() {
        println!("no customers out: no extra calls expected");
    }
    for c in covers {
        let ids = |v: &[StaffId]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        println!(
            "{:<6} {:>7.1} calls/h  Erlang C {:>3} (Erlang A {:>3}) → {:>3} on shift with shrinkage; \
             on shift: [{}]; call in: [{}]; gap {}",
            c.language,
            c.calls_per_hour,
            c.erlang_c,
            c.erlang_a,
            c.needed,
            ids(&c.on_shift),
            ids(&c.surge),
            c.gap
        );
    }
    Ok(())
}

async fn show(store: &Store) -> anyhow::Result<()> {
    let rows = store.assignments().await?;
    if rows.is_empty() {
        println!("no open fault needs a crew");
    }
    for a in &rows {
        let who = a.staff_id.as_ref().map_or("— unfilled —", |s| s.as_str());
        let state = if a.pinned {
            format!("{} (pinned)", a.state)
        } else {
            a.state.clone()
        };
        println!(
            "{:<12} {:<16} #{} (level ≥ {})  {:<10} {:<21}  travel {:>6.1} km, priority {}, on call {}, disruption {}",
            a.slot.fault.as_str(),
            a.slot.skill.as_str(),
            a.slot.index,
            a.min_level,
            who,
            state,
            a.terms.travel_m as f64 / 1000.0,
            a.terms.priority,
            a.terms.on_call,
            a.terms.disruption
        );
    }
    Ok(())
}
