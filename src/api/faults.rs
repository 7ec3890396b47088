//! Faults: the list, one fault in full, its affected customers, and the map layers (fault
//! areas as GeoJSON, customers as a density grid — a million points would not render).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::Viewer;
use super::error::QueryArgs;
use super::{customers::masked, ApiError, ApiState};
use crate::domain::FaultId;
use crate::outage::Fault;
use crate::status::StatusDoc;

/// Largest page of a fault's customers.
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct ListArgs {
    /// Comma-separated public states (`pending`, `active`, `planned`, `restored`, `cancelled`).
    state: Option<String>,
    region: Option<String>,
    /// Faults changed at or after / before this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// The fault's document as MQTT subscribers see it: state from the live book, counts and crew
/// from the newest published document (they lag the book by at most the publish interval).
fn document(
    state: &ApiState,
    fault: &Fault,
    now: DateTime<Utc>,
    delay: chrono::Duration,
) -> StatusDoc {
    let mut doc = StatusDoc::of(fault, now, delay);
    if let Some(published) = state.latest.get(fault.id.as_str()) {
        doc.notices = published.notices.clone();
        doc.customer_reports = published.customer_reports;
        doc.crew = published.crew.clone();
        doc.crew_unfilled = published.crew_unfilled.clone();
    }
    doc.updated_at = fault.updated_at;
    doc
}

/// One entry of the list: the document, and the region when the caller filtered by it.
#[derive(Serialize)]
struct Entry {
    #[serde(flatten)]
    doc: StatusDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

#[derive(Serialize)]
pub struct FaultList {
    count: usize,
    faults: Vec<Entry>,
}

/// `GET /api/v1/faults`: open faults first, the largest first.
pub async fn list(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    QueryArgs(args): QueryArgs<ListArgs>,
) -> Result<Json<FaultList>, ApiError> {
    let states: Option<Vec<String>> = args
        .state
        .as_deref()
        .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect());
    let regions = match &args.region {
        Some(_) => Some(state.store.fault_regions(&state.events_filter).await?),
        None => None,
    };
    let now = state.clock.now();
    let book = state.book.read();
    let delay = book.momentary_delay();
    // Serialised as typed structs: building a JSON tree per fault first cost more than the rest
    // of the request at storm size.
    let mut rows: Vec<(bool, usize, Entry)> = book
        .faults()
        .filter(|f| args.since.is_none_or(|t| f.updated_at >= t))
        .filter(|f| args.until.is_none_or(|t| f.updated_at < t))
        .filter(|f| {
            let public = f.public_state(now, delay);
            states
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == public))
        })
        .filter(|f| match (&regions, &args.region) {
            (Some(map), Some(want)) => map.get(f.id.as_str()) == Some(want),
            _ => true,
        })
        .map(|f| {
            let region = regions.as_ref().and_then(|m| m.get(f.id.as_str()).cloned());
            let doc = document(&state, f, now, delay);
            (f.state.is_open(), f.affected.len(), Entry { doc, region })
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.0, b.1)
            .cmp(&(a.0, a.1))
            .then_with(|| a.2.doc.fault_id.cmp(&b.2.doc.fault_id))
    });
    let faults: Vec<Entry> = rows.into_iter().map(|(_, _, e)| e).collect();
    Ok(Json(FaultList {
        count: faults.len(),
        faults,
    }))
}

/// `GET /api/v1/faults/{id}`: the document plus area, devices, crew needs, notices by channel
/// and state, the plan's slots and the customers' own reports.
pub async fn one(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = fault_id(&id)?;
    let mut body = {
        let book = state.book.read();
        let fault = book
            .fault(&id)
            .ok_or_else(|| ApiError::NotFound(format!("no fault {}", id.as_str())))?;
        let doc = document(&state, fault, state.clock.now(), book.momentary_delay());
        let mut body = serde_json::to_value(doc).unwrap_or(Value::Null);
        body["area"] = fault
            .area
            .as_ref()
            .map_or(Value::Null, |a| a.geojson.clone());
        body["radius_m"] = json!(fault.area.as_ref().and_then(|a| a.radius_m));
        body["devices"] = json!(fault.devices);
        body["note"] = json!(fault.note);
        body["detected_at"] = json!(fault.detected_at);
        body["restored_at"] = json!(fault.restored_at);
        let needs: BTreeMap<&str, u32> = fault
            .crew_needs
            .iter()
            .map(|(s, n)| (s.as_str(), *n))
            .collect();
        body["crew_needs"] = json!(needs);
        body
    };
    let mut by_channel: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (channel, st, n) in state.store.notice_breakdown(id.as_str()).await? {
        let channel = channel.unwrap_or_else(|| "none".into());
        by_channel.entry(channel).or_default().insert(st, n);
    }
    body["notices_by_channel"] = json!(by_channel);
    let reports: Vec<Value> = state
        .store
        .reports_of(id.as_str(), 100)
        .await?
        .into_iter()
        .map(
            |(customer, source, at)| json!({ "customer_id": customer, "source": source, "at": at }),
        )
        .collect();
    body["reports"] = json!(reports);
    let slots: Vec<Value> = state
        .store
        .assignments()
        .await?
        .iter()
        .filter(|a| a.slot.fault == id)
        .map(super::staffing::assignment_json)
        .collect();
    body["assignments"] = json!(slots);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct PageArgs {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/v1/faults/{id}/customers`: the customers it holds out, paged; contacts masked
/// unless the caller is an operator.
pub async fn customers(
    State(state): State<ApiState>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    QueryArgs(page): QueryArgs<PageArgs>,
) -> Result<Json<Value>, ApiError> {
    let id = fault_id(&id)?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (total, ids) = {
        let book = state.book.read();
        let fault = book
            .fault(&id)
            .ok_or_else(|| ApiError::NotFound(format!("no fault {}", id.as_str())))?;
        let ids: Vec<String> = fault
            .affected
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&c| book.index().get(c).id.as_str().to_owned())
            .collect();
        (fault.affected.len(), ids)
    };
    let mut found: HashMap<String, _> = state
        .store
        .customers(&ids)
        .await?
        .into_iter()
        .map(|c| (c.customer_id.clone(), c))
        .collect();
    let customers: Vec<Value> = ids
        .iter()
        .filter_map(|i| found.remove(i))
        .map(|c| masked(c, caller.sees_contacts()))
        .collect();
    Ok(Json(json!({
        "fault_id": id.as_str(), "total": total, "offset": offset, "limit": limit,
        "customers": customers,
    })))
}

/// `GET /api/v1/map/faults`: open faults as a GeoJSON FeatureCollection. Circles are points
/// with `radius_m`; a fault known only by its devices is a point at its customers' centre.
pub async fn map(State(state): State<ApiState>, Viewer(_): Viewer) -> Json<Value> {
    let now = state.clock.now();
    let book = state.book.read();
    let delay = book.momentary_delay();
    let features: Vec<Value> = book
        .faults()
        .filter(|f| f.state.is_open())
        .filter_map(|f| {
            let geometry = match &f.area {
                Some(area) => area.geojson.clone(),
                None => {
                    let c = crate::staffing::service::fault_centre(&book, &f.id)?;
                    json!({ "type": "Point", "coordinates": [c.lon, c.lat] })
                }
            };
            Some(json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "fault_id": f.id.as_str(),
                    "state": f.public_state(now, delay),
                    "severity": f.severity.as_str(),
                    "affected": f.affected.len(),
                    "etr": f.etr,
                    "radius_m": f.area.as_ref().and_then(|a| a.radius_m),
                    "by_device": f.area.is_none(),
                },
            }))
        })
        .collect();
    Json(json!({ "type": "FeatureCollection", "features": features }))
}

#[derive(Debug, Deserialize)]
pub struct DensityArgs {
    /// Cells along the longer side of the customers' bounding box (default 64, at most 256).
    cells: Option<usize>,
}

/// `GET /api/v1/map/density`: customers counted on a grid over their bounding box, with how
/// many of each cell are out now. Only non-empty cells are listed: `[col, row, total, out]`.
pub async fn density(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    QueryArgs(args): QueryArgs<DensityArgs>,
) -> Json<Value> {
    let n = args.cells.unwrap_or(64).clamp(4, 256);
    let book = state.book.read();
    let index = book.index();
    // Erased customers keep their index but have no place (docs/DATA.md, "Erasure").
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for i in index.placed() {
        let at = index.get(i).at;
        (x0, y0, x1, y1) = (
            x0.min(at.lon),
            y0.min(at.lat),
            x1.max(at.lon),
            y1.max(at.lat),
        );
    }
    if index.placed().next().is_none() {
        return Json(json!({ "bbox": null, "cols": 0, "rows": 0, "cells": [] }));
    }
    let side = ((x1 - x0).max(y1 - y0) / n as f64).max(1e-6);
    let cols = ((x1 - x0) / side).floor() as usize + 1;
    let rows = ((y1 - y0) / side).floor() as usize + 1;
    let mut grid: HashMap<(usize, usize), (u32, u32)> = HashMap::new();
    for i in index.placed() {
        let at = index.get(i).at;
        let cell = (
            ((at.lon - x0) / side) as usize,
            ((at.lat - y0) / side) as usize,
        );
        let entry = grid.entry(cell).or_default();
        entry.0 += 1;
        entry.1 += u32::from(book.is_out(i));
    }
    let mut cells: Vec<[u32; 4]> = grid
        .into_iter()
        .map(|((c, r), (t, o))| [c as u32, r as u32, t, o])
        .collect();
    cells.sort_unstable();
    Json(json!({
        "bbox": [x0, y0, x0 + side * cols as f64, y0 + side * rows as f64],
        "cols": cols, "rows": rows, "cells": cells,
    }))
}

pub(super) fn fault_id(raw: &str) -> Result<FaultId, ApiError> {
    FaultId::parse(raw).map_err(|e| ApiError::BadRequest(format!("fault id: {e}")))
}
