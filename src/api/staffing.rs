//! Staffing through the API: staff and their status, the plan, coordinators' overrides (pin,
//! move, release), answers on staff's behalf, and the call-centre forecast. Every override is
//! audited by the store (who: the API key) and wakes the re-plan at once.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Coordinator, Viewer};
use super::customers::{email_shown, phone_shown};
use super::error::JsonBody;
use super::faults::fault_id;
use super::{ApiError, ApiState};
use crate::domain::{Coord, Skill, StaffId, StaffStatus};
use crate::staffing::plan::SlotKey;
use crate::store::{AssignmentRow, StaffState};

/// A plan row as JSON, with the cost terms that chose it.
pub(super) fn assignment_json(a: &AssignmentRow) -> Value {
    json!({
        "fault_id": a.slot.fault.as_str(), "skill": a.slot.skill.as_str(), "index": a.slot.index,
        "min_level": a.min_level, "staff_id": a.staff_id.as_ref().map(|s| s.as_str()),
        "pinned": a.pinned, "state": a.state,
        "terms": {
            "travel_m": a.terms.travel_m, "priority": a.terms.priority, "on_call": a.terms.on_call,
            "disruption": a.terms.disruption, "total": a.terms.total,
        },
        "dispatched_at": a.dispatched_at, "answered_at": a.answered_at,
    })
}

fn staff_json(s: &StaffState, assignment: Option<&AssignmentRow>, contacts: bool) -> Value {
    let r = &s.record;
    let phone = phone_shown(r.phone.as_ref(), contacts);
    let email = email_shown(r.email.as_ref(), contacts);
    let assignment = assignment.map(assignment_json);
    let skills: Vec<Value> = r
        .skills
        .iter()
        .map(|(s, l)| json!({ "skill": s.as_str(), "level": l.get() }))
        .collect();
    json!({
        "staff_id": r.id.as_str(), "name": r.name, "phone": phone, "email": email,
        "skills": skills,
        "languages": r.languages.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "status": r.status.as_str(), "lon": s.at.lon, "lat": s.at.lat,
        "hours_worked": s.hours_worked, "max_shift_hours": r.max_shift_hours,
        "assignment": assignment,
    })
}

/// `GET /api/v1/staff`: everyone, where they are and what they are assigned to. Contacts are
/// shown to coordinators (who call crews), masked for everyone else.
pub async fn staff(
    State(state): State<ApiState>,
    Viewer(caller): Viewer,
) -> Result<Json<Value>, ApiError> {
    let plan = state.store.assignments().await?;
    // Looked up per person: a scan of the plan for each of thousands of staff adds up.
    let by_staff: std::collections::HashMap<&StaffId, &AssignmentRow> = plan
        .iter()
        .filter_map(|a| Some((a.staff_id.as_ref()?, a)))
        .collect();
    let contacts = caller.sees_staff_contacts();
    let people: Vec<Value> = state
        .store
        .staff_states()
        .await?
        .iter()
        .map(|s| staff_json(s, by_staff.get(&s.record.id).copied(), contacts))
        .collect();
    Ok(Json(json!({ "staff": people })))
}

/// `GET /api/v1/assignments`: every slot of every open fault.
pub async fn assignments(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
) -> Result<Json<Value>, ApiError> {
    let rows: Vec<Value> = state
        .store
        .assignments()
        .await?
        .iter()
        .map(assignment_json)
        .collect();
    Ok(Json(json!({ "assignments": rows })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffUpdate {
    status: Option<String>,
    lon: Option<f64>,
    lat: Option<f64>,
    why: String,
}

/// `PATCH /api/v1/staff/{id}`: status and/or position.
pub async fn update(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<StaffUpdate>,
) -> Result<Json<Value>, ApiError> {
    let staff = staff_id(&id)?;
    let bad = |e: crate::domain::DomainError| ApiError::Unprocessable(e.to_string());
    let status = body
        .status
        .as_deref()
        .map(str::parse::<StaffStatus>)
        .transpose()
        .map_err(bad)?;
    let at = match (body.lon, body.lat) {
        (Some(lon), Some(lat)) => Some(Coord::new(lon, lat).map_err(bad)?),
        (None, None) => None,
        _ => return Err(ApiError::Unprocessable("give both lon and lat".into())),
    };
    if status.is_none() && at.is_none() {
        return Err(ApiError::Unprocessable(
            "nothing to change: give status and/or lon, lat".into(),
        ));
    }
    let now = crate::store::millis(state.clock.now());
    if !state
        .store
        .update_staff(&staff, status, at, &caller.actor(), &body.why, now)
        .await?
    {
        return Err(ApiError::NotFound(format!("no staff member {id}")));
    }
    state.staffing_changed();
    Ok(Json(json!({ "staff_id": id, "updated": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    fault_id: String,
    skill: String,
    #[serde(default = "first")]
    index: u16,
    staff_id: String,
    why: String,
}

fn first() -> u16 {
    1
}

/// `POST /api/v1/assignments/pin`: keep a person on a slot whatever the solver says.
pub async fn pin(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    JsonBody(body): JsonBody<PinBody>,
) -> Result<Json<Value>, ApiError> {
    let slot = SlotKey {
        fault: fault_id(&body.fault_id)?,
        skill: body
            .skill
            .parse::<Skill>()
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?,
        index: body.index,
    };
    let person = find_staff(&state, &staff_id(&body.staff_id)?).await?;
    let level = state.store.slot_min_level(&slot).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{} has no {} slot #{} in the plan",
            slot.fault.as_str(),
            slot.skill.as_str(),
            slot.index
        ))
    })?;
    pin_to(&state, &caller, &person, slot, level, &body.why).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    staff_id: String,
    fault_id: String,
    /// The skill to fill there; default: any the person is qualified for.
    skill: Option<String>,
    why: String,
}

/// `POST /api/v1/assignments/move`: move a person to another fault, onto its first slot they
/// qualify for (unfilled first, then one not pinned), pinned there.
pub async fn move_person(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    let staff = staff_id(&body.staff_id)?;
    let fault = fault_id(&body.fault_id)?;
    let skill = body
        .skill
        .as_deref()
        .map(str::parse::<Skill>)
        .transpose()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let person = find_staff(&state, &staff).await?;
    let plan = state.store.assignments().await?;
    let chosen = plan
        .iter()
        .filter(|a| a.slot.fault == fault && skill.is_none_or(|s| s == a.slot.skill))
        .filter(|a| qualifies(&person, a.slot.skill, a.min_level))
        .min_by_key(|a| (a.staff_id.is_some(), a.pinned, a.slot.clone()))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "{} has no slot {} is qualified for",
                fault.as_str(),
                staff.as_str()
            ))
        })?;
    let (slot, level) = (chosen.slot.clone(), chosen.min_level);
    pin_to(&state, &caller, &person, slot, level, &body.why).await
}

fn qualifies(person: &StaffState, skill: Skill, level: u8) -> bool {
    person
        .record
        .skills
        .iter()
        .any(|(s, l)| *s == skill && l.get() >= level)
}

/// Pins a person the caller has looked up onto a slot of the plan (of minimum `level`).
async fn pin_to(
    state: &ApiState,
    caller: &super::auth::Caller,
    person: &StaffState,
    slot: SlotKey,
    level: u8,
    why: &str,
) -> Result<Json<Value>, ApiError> {
    let staff = &person.record.id;
    if !qualifies(person, slot.skill, level) {
        return Err(ApiError::Unprocessable(format!(
            "{} lacks {} at level {level}",
            staff.as_str(),
            slot.skill.as_str()
        )));
    }
    let now = crate::store::millis(state.clock.now());
    state
        .store
        .pin(&slot, level, staff, &caller.actor(), why, now)
        .await?;
    state.staffing_changed();
    Ok(Json(json!({
        "staff_id": staff.as_str(), "fault_id": slot.fault.as_str(),
        "skill": slot.skill.as_str(), "index": slot.index, "pinned": true,
    })))
}

#[derive(Debug, Deserialize)]
pub struct WhyBody {
    why: String,
}

/// `POST /api/v1/staff/{id}/release`: the solver decides about a pinned person again.
pub async fn release(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WhyBody>,
) -> Result<Json<Value>, ApiError> {
    let staff = staff_id(&id)?;
    let now = crate::store::millis(state.clock.now());
    if !state
        .store
        .release(&staff, &caller.actor(), &body.why, now)
        .await?
    {
        return Err(ApiError::Conflict(format!("{id} has no pinned slot")));
    }
    state.staffing_changed();
    Ok(Json(json!({ "staff_id": id, "released": true })))
}

/// `POST /api/v1/staff/{id}/accept`: accept a dispatch on the person's behalf.
pub async fn accept(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(&state, &caller, &id, true).await
}

/// `POST /api/v1/staff/{id}/decline`: decline on their behalf; they are not offered that
/// fault again, and the slot is re-planned at once.
pub async fn decline(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(&state, &caller, &id, false).await
}

async fn answer(
    state: &ApiState,
    caller: &super::auth::Caller,
    id: &str,
    accept: bool,
) -> Result<Json<Value>, ApiError> {
    let staff = staff_id(id)?;
    let now = crate::store::millis(state.clock.now());
    let slot = state
        .store
        .answer_dispatch(&staff, accept, &caller.actor(), now)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("{id} has no dispatch waiting for an answer")))?;
    state.staffing_changed();
    Ok(Json(json!({
        "staff_id": id, "answer": if accept { "accepted" } else { "declined" },
        "fault_id": slot.fault.as_str(), "skill": slot.skill.as_str(), "index": slot.index,
    })))
}

/// `POST /api/v1/staff/{id}/rested`: their hours on assignment restart from zero.
pub async fn rested(
    State(state): State<ApiState>,
    Coordinator(caller): Coordinator,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let staff = staff_id(&id)?;
    let now = crate::store::millis(state.clock.now());
    if !state.store.rested(&staff, &caller.actor(), now).await? {
        return Err(ApiError::NotFound(format!("no staff member {id}")));
    }
    state.staffing_changed();
    Ok(Json(json!({ "staff_id": id, "hours_worked": 0 })))
}

/// `GET /api/v1/callcenter`: calls per hour, agents needed (Erlang C; Erlang A as the
/// optimistic bound), who is on shift, whom to call in and the gap, per language.
pub async fn callcenter(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
) -> Result<Json<Value>, ApiError> {
    let now = crate::store::millis(state.clock.now());
    let covers = crate::staffing::commands::forecast(&state.store, &state.call_center, now).await?;
    let gap: u32 = covers.iter().map(|c| c.gap).sum();
    Ok(Json(json!({ "languages": covers, "gap": gap })))
}

async fn find_staff(state: &ApiState, staff: &StaffId) -> Result<StaffState, ApiError> {
    state
        .store
        .staff_states()
        .await?
        .into_iter()
        .find(|s| &s.record.id == staff)
        .ok_or_else(|| ApiError::NotFound(format!("no staff member {}", staff.as_str())))
}

fn staff_id(raw: &str) -> Result<StaffId, ApiError> {
    StaffId::parse(raw).map_err(|e| ApiError::BadRequest(format!("staff id: {e}")))
}
