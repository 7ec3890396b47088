//! Staffing's tables: people with their run-time state, the current plan, and the audit log of
//! coordinators' overrides.

use std::collections::HashMap;

use sqlx::Row;

use super::{on_pool, Store, StoreError};
use crate::directory::StaffRecord;
use crate::domain::{
    Coord, Email, FaultId, Language, Phone, Skill, SkillLevel, StaffId, StaffStatus,
};
use crate::staffing::plan::{SlotKey, Terms};

/// A staff member as stored, with what changes at run time.
#[derive(Debug, Clone)]
pub struct StaffState {
    pub record: StaffRecord,
    /// Where they are now (their depot unless moved).
    pub at: Coord,
    pub hours_worked: f64,
}

/// One slot of the stored plan.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRow {
    pub slot: SlotKey,
    pub min_level: u8,
    /// `None`: unfilled.
    pub staff_id: Option<StaffId>,
    pub pinned: bool,
    /// `proposed`, `dispatched`, `accepted`, `declined` or `unfilled`.
    pub state: String,
    pub terms: Terms,
    /// When the dispatch notice was created, and when the person answered.
    pub dispatched_at: Option<i64>,
    pub answered_at: Option<i64>,
}

/// One audited override.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub staff_id: Option<String>,
    pub fault_id: Option<String>,
    pub detail: String,
    pub reason: String,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn staff_state(r: &impl StaffColumns) -> Result<StaffState, StoreError> {
    let skills = r
        .text(4)?
        .split('|')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (skill, level) = s.split_once(':').unwrap_or((s, "1"));
            let level: u8 = level.parse().map_err(corrupt)?;
            Ok((
                skill.parse::<Skill>().map_err(corrupt)?,
                SkillLevel::new(level).map_err(corrupt)?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let languages = r
        .text(5)?
        .split('|')
        .filter(|s| !s.is_empty())
        .map(|l| Language::parse(l).map_err(corrupt))
        .collect::<Result<Vec<_>, _>>()?;
    let depot = Coord::new(r.real(6)?, r.real(7)?).map_err(corrupt)?;
    let at = match (r.maybe_real(11)?, r.maybe_real(12)?) {
        (Some(lon), Some(lat)) => Coord::new(lon, lat).map_err(corrupt)?,
        _ => depot,
    };
    let record = StaffRecord {
        id: StaffId::parse(&r.text(0)?).map_err(corrupt)?,
        name: r.text(1)?,
        phone: r.maybe_text(2)?.and_then(|p| Phone::parse(&p).ok()),
        email: r.maybe_text(3)?.and_then(|e| Email::parse(&e).ok()),
        skills,
        languages,
        depot,
        status: r.text(8)?.parse().map_err(corrupt)?,
        max_shift_hours: r.real(9)?,
    };
    Ok(StaffState {
        record,
        at,
        hours_worked: r.real(10)?,
    })
}

/// Column access shared by both backends' rows.
trait StaffColumns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn maybe_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn real(&self, i: usize) -> Result<f64, StoreError>;
    fn maybe_real(&self, i: usize) -> Result<Option<f64>, StoreError>;
}

macro_rules! staff_columns {
    ($row:ty) => {
        impl StaffColumns for $row {
            fn text(&self, i: usize) -> Result<String, StoreError> {
                Ok(self.try_get(i)?)
            }
            fn maybe_text(&self, i: usize) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(i)?)
            }
            fn real(&self, i: usize) -> Result<f64, StoreError> {
                Ok(self.try_get(i)?)
            }
            fn maybe_real(&self, i: usize) -> Result<Option<f64>, StoreError> {
                Ok(self.try_get(i)?)
            }
        }
    };
}
staff_columns!(sqlx::sqlite::SqliteRow);
staff_columns!(sqlx::postgres::PgRow);

const STAFF_COLUMNS: &str = "staff_id, name, phone, email, skills, languages, lon, lat, status, \
    max_shift_hours, hours_worked, cur_lon, cur_lat";

macro_rules! upsert_assignment {
    () => {
        "INSERT INTO assignments (fault_id, skill, slot_index, min_level, staff_id, pinned, state, \
         travel_m, priority, on_call, disruption, total, updated_at, dispatched_at, answered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (fault_id, skill, slot_index) DO UPDATE SET min_level = excluded.min_level, \
         staff_id = excluded.staff_id, pinned = excluded.pinned, state = excluded.state, \
         travel_m = excluded.travel_m, priority = excluded.priority, on_call = excluded.on_call, \
         disruption = excluded.disruption, total = excluded.total, updated_at = excluded.updated_at, \
         dispatched_at = excluded.dispatched_at, answered_at = excluded.answered_at"
    };
}
/// A coordinator's pin replaces whatever the slot held.
const PIN_ASSIGNMENT: &str = upsert_assignment!();
/// A plan never overwrites a pin, even one made while the plan was being computed.
const PLAN_ASSIGNMENT: &str = concat!(upsert_assignment!(), " WHERE assignments.pinned = 0");

const AUDIT: &str =
    "INSERT INTO staffing_audit (at, actor, action, staff_id, fault_id, detail, reason) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

impl Store {
    /// Every staff member with their run-time state.
    pub async fn staff_states(&self) -> Result<Vec<StaffState>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY staff_id");
        on_pool!(self, pool, _Db => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(staff_state).collect()
        })
    }

    /// The minimum level of a slot of the stored plan; `None` when the plan has no such slot.
    pub async fn slot_min_level(&self, slot: &SlotKey) -> Result<Option<u8>, StoreError> {
        let sql = "SELECT min_level FROM assignments WHERE fault_id = $1 AND skill = $2 AND slot_index = $3";
        let level = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql)
            .bind(slot.fault.as_str()).bind(slot.skill.as_str()).bind(i64::from(slot.index))
            .fetch_optional(pool).await?);
        level
            .map(|l| u8::try_from(l).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// The stored plan, by fault and slot.
    pub async fn assignments(&self) -> Result<Vec<AssignmentRow>, StoreError> {
        let sql = "SELECT fault_id, skill, slot_index, min_level, staff_id, pinned, state, travel_m, \
                   priority, on_call, disruption, total, dispatched_at, answered_at FROM assignments \
                   ORDER BY fault_id, skill, slot_index";
        on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            rows.iter().map(|r| {
                let fault: String = r.try_get(0)?;
                let skill: String = r.try_get(1)?;
                let staff: Option<String> = r.try_get(4)?;
                Ok(AssignmentRow {
                    slot: slot_key(&fault, &skill, r.try_get(2)?)?,
                    min_level: u8::try_from(r.try_get::<i64, _>(3)?).map_err(corrupt)?,
                    staff_id: staff.map(|s| StaffId::parse(&s)).transpose().map_err(corrupt)?,
                    pinned: r.try_get::<i64, _>(5)? != 0,
                    state: r.try_get(6)?,
                    terms: Terms {
                        travel_m: r.try_get(7)?, priority: r.try_get(8)?, on_call: r.try_get(9)?,
                        disruption: r.try_get(10)?, total: r.try_get(11)?,
                    },
                    dispatched_at: r.try_get(12)?,
                    answered_at: r.try_get(13)?,
                })
            }).collect()
        })
    }

    /// Replaces the plan: every unpinned row goes, `rows` come in; pinned rows stay unless
    /// their fault is no longer planned (restoration releases the crew).
    ///
    /// `rows` were planned from a read of the plan made before; a person may have answered
    /// their dispatch since. Their answer is kept: a row still `dispatched` in `rows` takes the
    /// answer the stored row holds at the moment it is replaced.
    pub async fn save_plan(&self, rows: &[AssignmentRow], now: i64) -> Result<(), StoreError> {
        let faults: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.slot.fault.as_str()).collect();
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = self.assignments_lock() {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let replaced: Vec<Replaced> = sqlx::query_as(
                "DELETE FROM assignments WHERE pinned = 0 \
                 RETURNING fault_id, skill, slot_index, staff_id, state, answered_at",
            )
            .fetch_all(&mut *tx).await?;
            let answers = Answers::from_replaced(replaced)?;
            let pinned: Vec<String> = sqlx::query_scalar("SELECT DISTINCT fault_id FROM assignments")
                .fetch_all(&mut *tx).await?;
            for gone in pinned.iter().filter(|f| !faults.contains(f.as_str())) {
                sqlx::query("DELETE FROM assignments WHERE fault_id = $1").bind(gone).execute(&mut *tx).await?;
            }
            for r in rows.iter().filter(|r| !r.pinned) {
                let r = answers.applied_to(r);
                insert_assignment::<Db>(PLAN_ASSIGNMENT, &r, now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Pins `staff` to `slot` (moving them off any other pinned slot), audited.
    pub async fn pin(
        &self,
        slot: &SlotKey,
        min_level: u8,
        staff: &StaffId,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let row = AssignmentRow {
            slot: slot.clone(),
            min_level,
            staff_id: Some(staff.clone()),
            pinned: true,
            state: "proposed".into(),
            terms: Terms::default(),
            dispatched_at: None,
            answered_at: None,
        };
        let detail = format!(
            "{} {} #{}",
            slot.fault.as_str(),
            slot.skill.as_str(),
            slot.index
        );
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM assignments WHERE staff_id = $1 AND pinned = 1")
                .bind(staff.as_str()).execute(&mut *tx).await?;
            insert_assignment::<Db>(PIN_ASSIGNMENT, &row, now).execute(&mut *tx).await?;
            sqlx::query(AUDIT).bind(now).bind(actor).bind("pin").bind(staff.as_str())
                .bind(slot.fault.as_str()).bind(&detail).bind(reason).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Releases `staff` from their pinned slot, audited; false when they had none.
    pub async fn release(
        &self,
        staff: &StaffId,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let released = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM assignments WHERE staff_id = $1 AND pinned = 1")
                .bind(staff.as_str()).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query(AUDIT).bind(now).bind(actor).bind("release").bind(staff.as_str())
                    .bind(None::<String>).bind("unpinned").bind(reason).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(released)
    }

    /// Changes a person's status and/or position, audited; false when there is no such person.
    pub async fn update_staff(
        &self,
        staff: &StaffId,
        status: Option<StaffStatus>,
        at: Option<Coord>,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let detail = match (status, at) {
            (Some(s), Some(c)) => format!("status {}, at {:.5},{:.5}", s.as_str(), c.lon, c.lat),
            (Some(s), None) => format!("status {}", s.as_str()),
            (None, Some(c)) => format!("at {:.5},{:.5}", c.lon, c.lat),
            (None, None) => return Ok(true),
        };
        let sql =
            "UPDATE staff SET status = COALESCE($2, status), cur_lon = COALESCE($3, cur_lon), \
                   cur_lat = COALESCE($4, cur_lat) WHERE staff_id = $1";
        let found = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(sql).bind(staff.as_str()).bind(status.map(|s| s.as_str()))
                .bind(at.map(|c| c.lon)).bind(at.map(|c| c.lat)).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query(AUDIT).bind(now).bind(actor).bind("update").bind(staff.as_str())
                    .bind(None::<String>).bind(&detail).bind(reason).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(found)
    }

    /// Records a person's answer to their dispatch (`how`: `sms`, `timeout`, or who answered
    /// for them). A decline frees the slot (a pin with it) and keeps the person off that
    /// fault. Returns the slot answered, if they had one waiting for an answer.
    pub async fn answer_dispatch(
        &self,
        staff: &StaffId,
        accept: bool,
        how: &str,
        now: i64,
    ) -> Result<Option<SlotKey>, StoreError> {
        let (state, keep_pin) = if accept {
            ("accepted", 1_i64)
        } else {
            ("declined", 0)
        };
        // One statement finds the waiting row and answers it, so no re-plan stored in between
        // can be answered by mistake or undo the answer; on SQLite the write also takes the
        // database's lock before the read.
        let answer = "UPDATE assignments SET state = $1, answered_at = $2, updated_at = $2, \
                      pinned = CASE WHEN $3 = 1 THEN pinned ELSE 0 END \
                      WHERE (fault_id, skill, slot_index) = (SELECT fault_id, skill, slot_index \
                          FROM assignments WHERE staff_id = $4 AND state = 'dispatched' \
                          ORDER BY fault_id, skill, slot_index LIMIT 1) \
                      RETURNING fault_id, skill, slot_index";
        let slot = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = self.assignments_lock() {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let answered: Option<(String, String, i64)> = sqlx::query_as(answer)
                .bind(state).bind(now).bind(keep_pin).bind(staff.as_str())
                .fetch_optional(&mut *tx).await?;
            let Some((fault, skill, index)) = answered else {
                tx.rollback().await?; // at once, not when the pool next sees the connection
                return Ok(None);
            };
            if !accept {
                sqlx::query("INSERT INTO staff_declines (fault_id, staff_id, at, how) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (fault_id, staff_id) DO NOTHING")
                    .bind(&fault).bind(staff.as_str()).bind(now).bind(how)
                    .execute(&mut *tx).await?;
            }
            let detail = format!("{fault} {skill} #{index}");
            sqlx::query(AUDIT).bind(now).bind(how).bind(state).bind(staff.as_str())
                .bind(&fault).bind(&detail).bind("answer to the dispatch").execute(&mut *tx).await?;
            tx.commit().await?;
            slot_key(&fault, &skill, index)?
        });
        Ok(Some(slot))
    }

    /// The statement that makes plan saves and dispatch answers take turns on PostgreSQL,
    /// where two transactions can each read the plan before the other writes it. It blocks
    /// other writers of `assignments` until commit, never readers. SQLite needs none: a
    /// transaction that starts by writing holds the whole database.
    fn assignments_lock(&self) -> Option<&'static str> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(_) => Some("LOCK TABLE assignments IN SHARE ROW EXCLUSIVE MODE"),
        }
    }

    /// Dispatches unanswered since before `cutoff` count as declined; returns how many.
    pub async fn expire_dispatches(&self, cutoff: i64, now: i64) -> Result<usize, StoreError> {
        let stale: Vec<StaffId> = self
            .assignments()
            .await?
            .into_iter()
            .filter(|a| a.state == "dispatched" && a.dispatched_at.is_some_and(|t| t < cutoff))
            .filter_map(|a| a.staff_id)
            .collect();
        for staff in &stale {
            self.answer_dispatch(staff, false, "timeout", now).await?;
        }
        Ok(stale.len())
    }

    /// (fault, person) pairs not to be offered again.
    pub async fn staff_declines(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT fault_id, staff_id FROM staff_declines";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// (language, customers out, oldest start in ms) per language of the customers out now,
    /// for the call-centre forecast.
    pub async fn customers_out_by_language(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let sql = "SELECT c.language, COUNT(DISTINCT o.customer_id), MIN(o.since) FROM customer_outages o \
                   JOIN customers c ON c.customer_id = o.customer_id WHERE o.state = 'out' \
                   GROUP BY c.language ORDER BY c.language";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, i64, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// The staff member with this phone number, and their first language.
    pub async fn staff_by_phone(
        &self,
        phone: &str,
    ) -> Result<Option<(StaffId, String)>, StoreError> {
        let sql =
            "SELECT staff_id, languages FROM staff WHERE phone = $1 ORDER BY staff_id LIMIT 1";
        let row: Option<(String, String)> = on_pool!(self, pool, _Db => sqlx::query_as(sql).bind(phone).fetch_optional(pool).await?);
        row.map(|(id, languages)| {
            let language = languages
                .split('|')
                .next()
                .filter(|l| !l.is_empty())
                .unwrap_or("en")
                .to_owned();
            Ok((StaffId::parse(&id).map_err(corrupt)?, language))
        })
        .transpose()
    }

    /// Adds hours on assignment to people whose accepted assignment ended (they rest when a
    /// coordinator says so: [`Store::rested`]).
    pub async fn add_hours_worked(&self, worked: &[(StaffId, f64)]) -> Result<(), StoreError> {
        on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            for (staff, hours) in worked {
                sqlx::query("UPDATE staff SET hours_worked = hours_worked + $2 WHERE staff_id = $1")
                    .bind(staff.as_str()).bind(*hours).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A person has rested: their hours on assignment start again from zero (audited).
    pub async fn rested(&self, staff: &StaffId, actor: &str, now: i64) -> Result<bool, StoreError> {
        let found = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("UPDATE staff SET hours_worked = 0 WHERE staff_id = $1")
                .bind(staff.as_str()).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query(AUDIT).bind(now).bind(actor).bind("rested").bind(staff.as_str())
                    .bind(None::<String>).bind("hours on assignment reset").bind("rest").execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(found)
    }

    /// The audit log, oldest first.
    pub async fn staffing_audit(&self) -> Result<Vec<AuditRow>, StoreError> {
        let sql = "SELECT at, actor, action, staff_id, fault_id, detail, reason FROM staffing_audit ORDER BY id";
        on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(AuditRow {
                at: r.try_get(0)?, actor: r.try_get(1)?, action: r.try_get(2)?, staff_id: r.try_get(3)?,
                fault_id: r.try_get(4)?, detail: r.try_get(5)?, reason: r.try_get(6)?,
            })).collect()
        })
    }
}

fn slot_key(fault: &str, skill: &str, index: i64) -> Result<SlotKey, StoreError> {
    Ok(SlotKey {
        fault: FaultId::parse(fault).map_err(corrupt)?,
        skill: skill.parse().map_err(corrupt)?,
        index: u16::try_from(index).map_err(corrupt)?,
    })
}

/// A plan row as it was replaced: fault, skill, slot index, person, state, answered at.
type Replaced = (String, String, i64, Option<String>, String, Option<i64>);

/// What a person answered to a slot's dispatch: `accepted` or `declined`, and when.
struct Answer {
    staff: String,
    state: String,
    at: Option<i64>,
}

/// The answers that replaced plan rows held, by slot.
struct Answers(HashMap<SlotKey, Answer>);

impl Answers {
    fn from_replaced(replaced: Vec<Replaced>) -> Result<Self, StoreError> {
        let mut answers = HashMap::new();
        for (fault, skill, index, staff, state, at) in replaced {
            if let (Some(staff), "accepted" | "declined") = (staff, state.as_str()) {
                let slot = slot_key(&fault, &skill, index)?;
                answers.insert(slot, Answer { staff, state, at });
            }
        }
        Ok(Self(answers))
    }

    /// `row`, with the answer its person gave since the plan was read.
    fn applied_to<'r>(&self, row: &'r AssignmentRow) -> std::borrow::Cow<'r, AssignmentRow> {
        let same_person =
            |a: &&Answer| row.staff_id.as_ref().is_some_and(|s| s.as_str() == a.staff);
        match self.0.get(&row.slot).filter(same_person) {
            Some(a) if row.state == "dispatched" => std::borrow::Cow::Owned(AssignmentRow {
                state: a.state.clone(),
                answered_at: a.at,
                ..row.clone()
            }),
            _ => std::borrow::Cow::Borrowed(row),
        }
    }
}

fn insert_assignment<'q, Db>(
    sql: &'static str,
    r: &'q AssignmentRow,
    now: i64,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>
where
    Db: sqlx::Database,
    i64: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
    &'q str: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
    Option<&'q str>: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
    Option<i64>: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
{
    sqlx::query(sql)
        .bind(r.slot.fault.as_str())
        .bind(r.slot.skill.as_str())
        .bind(i64::from(r.slot.index))
        .bind(i64::from(r.min_level))
        .bind(r.staff_id.as_ref().map(|s| s.as_str()))
        .bind(i64::from(r.pinned))
        .bind(r.state.as_str())
        .bind(r.terms.travel_m)
        .bind(r.terms.priority)
        .bind(r.terms.on_call)
        .bind(r.terms.disruption)
        .bind(r.terms.total)
        .bind(now)
        .bind(r.dispatched_at)
        .bind(r.answered_at)
}
