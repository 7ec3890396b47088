//! The HTTP API against a real daemon (real Mosquitto, SQLite file or PostgreSQL): every
//! endpoint for every role, faults and their customers, events over HTTP, notices, staffing
//! overrides, customers, health, metrics, the live stream and the audit log.

mod common;

use common::api::{ApiClient, ROLES};
use common::*;
use serde_json::{json, Value};

const F1001: &[u8] = include_bytes!("../samples/events/detected-polygon.json");
const F1002: &[u8] = include_bytes!("../samples/events/detected-radius.json");

/// A daemon with the sample customers and staff, F-1001 and F-1002 detected and planned.
async fn storm(backend: Backend) -> (TestApp, ApiClient) {
    let app = spawn_app(backend).await;
    app.import_staff().await;
    app.publish(&[F1001, F1002]).await;
    app.wait_events(2).await;
    let store = app.store.clone();
    eventually("crews are planned", || {
        let store = store.clone();
        async move { !store.assignments().await.unwrap().is_empty() }
    })
    .await;
    let api = ApiClient::new(&app).await;
    (app, api)
}

fn new_event(id: &str, fault: &str) -> Value {
    json!({"v":1,"event_id":id,"fault_id":fault,"kind":"detected","seq":1,
           "occurred_at":"2026-11-23T15:00:00Z","cause":"storm","severity":"minor",
           "area":{"type":"Point","coordinates":[11.86,53.45]},"radius_m":200})
}

#[tokio::test]
async fn every_endpoint_checks_the_callers_role() {
    let (app, api) = storm(Backend::Sqlite).await;
    let staff = "S70001";
    let customer = "C7000000";
    let csv = include_str!("../samples/customers.csv")
        .lines()
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    let prefs = json!({"channels":["sms"],"language":"de","quiet_hours":"22:00-07:00"});
    let all: &[&str] = &ROLES;
    let operator: &[&str] = &["operator"];
    let coordinator: &[&str] = &["coordinator"];
    let cases: Vec<(&str, String, Option<Value>, &[&str])> = vec![
        ("GET", "/api/v1/faults".into(), None, all),
        ("GET", "/api/v1/faults/F-1001".into(), None, all),
        ("GET", "/api/v1/faults/F-1001/customers".into(), None, all),
        (
            "POST",
            "/api/v1/faults/F-1001/notices/cancel".into(),
            Some(json!({"reason":"test"})),
            operator,
        ),
        ("GET", "/api/v1/map/faults".into(), None, all),
        ("GET", "/api/v1/map/density".into(), None, all),
        (
            "POST",
            "/api/v1/events".into(),
            Some(new_event("evt-role", "F-ROLE")),
            operator,
        ),
        ("GET", "/api/v1/events/rejected".into(), None, all),
        ("GET", "/api/v1/notices?fault_id=F-1001".into(), None, all),
        ("POST", "/api/v1/notices/1/resend".into(), None, operator),
        ("GET", "/api/v1/staff".into(), None, all),
        (
            "PATCH",
            format!("/api/v1/staff/{staff}"),
            Some(json!({"status":"on_shift","why":"test"})),
            coordinator,
        ),
        (
            "POST",
            format!("/api/v1/staff/{staff}/release"),
            Some(json!({"why":"test"})),
            coordinator,
        ),
        (
            "POST",
            format!("/api/v1/staff/{staff}/accept"),
            None,
            coordinator,
        ),
        (
            "POST",
            format!("/api/v1/staff/{staff}/decline"),
            None,
            coordinator,
        ),
        (
            "POST",
            format!("/api/v1/staff/{staff}/rested"),
            None,
            coordinator,
        ),
        ("GET", "/api/v1/assignments".into(), None, all),
        (
            "POST",
            "/api/v1/assignments/pin".into(),
            Some(
                json!({"fault_id":"F-1002","skill":"lineworker","index":1,"staff_id":staff,"why":"test"}),
            ),
            coordinator,
        ),
        (
            "POST",
            "/api/v1/assignments/move".into(),
            Some(json!({"fault_id":"F-1002","staff_id":staff,"why":"test"})),
            coordinator,
        ),
        ("GET", "/api/v1/callcenter".into(), None, all),
        ("GET", format!("/api/v1/customers/{customer}"), None, all),
        (
            "PUT",
            format!("/api/v1/customers/{customer}/preferences"),
            Some(prefs),
            operator,
        ),
        ("GET", "/api/v1/audit".into(), None, all),
        ("GET", "/metrics".into(), None, all),
    ];
    for (method, path, body, allowed) in &cases {
        let (status, refusal) = api.call(method, path, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {path} without a key");
        assert!(
            refusal["message"].as_str().unwrap().contains("API key"),
            "{refusal}"
        );
        for role in ROLES {
            let (status, answer) = api.call(method, path, Some(role), body.clone()).await;
            if allowed.contains(&role) {
                assert!(
                    ![401, 403].contains(&status) && status < 500,
                    "{method} {path} as {role}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}: {answer}");
                let message = answer["message"].as_str().unwrap();
                assert!(
                    message.contains(allowed[0]) && message.contains(role),
                    "{message}"
                );
            }
        }
    }
    // The CSV upload is a text body, not JSON.
    for role in ROLES {
        let resp = api
            .http
            .post(format!("{}/api/v1/customers/import", api.base))
            .bearer_auth(&api.keys[role])
            .body(csv.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16() == 200, role == "operator", "{role}");
    }
    // A key that is wrong, or revoked, is refused like none.
    let bad = api
        .http
        .get(format!("{}/api/v1/faults", api.base))
        .bearer_auth("fl_00000000_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    // Every write was audited with its key; reads were not.
    let audit = api.get("/api/v1/audit?limit=1000", "viewer").await;
    let writes = audit["writes"].as_array().unwrap();
    let expected = cases.iter().filter(|c| c.0 != "GET").count() * 3 + 3;
    assert_eq!(writes.len(), expected, "{audit}");
    assert!(writes.iter().all(|w| w["method"] != "GET"));
    assert!(writes.iter().any(|w| w["path"] == "/api/v1/assignments/pin"
        && w["role"] == "coordinator"
        && w["status"] == 200));
    app.shutdown().await;
}

async fn faults_and_customers(backend: Backend) {
    let (app, api) = storm(backend).await;
    let list = api.get("/api/v1/faults", "viewer").await;
    assert_eq!(list["count"], 2, "{list}");
    let f1 = api.get("/api/v1/faults/F-1001", "viewer").await;
    let expected = in_box(&sample_customers(), 11.800, 53.400, 11.825, 53.420);
    assert_eq!(f1["affected"], expected.len(), "{f1}");
    assert_eq!(f1["etr"], "2026-11-23T18:00:00Z");
    assert_eq!(f1["area"]["type"], "Polygon");
    assert!(f1["notices_by_channel"].is_object());
    let f2 = api.get("/api/v1/faults/F-1002", "viewer").await;
    assert_eq!(f2["radius_m"], 600.0);
    assert!(!f2["assignments"].as_array().unwrap().is_empty(), "{f2}");
    // Filters: by state, by region (the events came on region `test`), by time.
    let active = api
        .get("/api/v1/faults?state=active,pending", "viewer")
        .await;
    assert_eq!(active["count"], 2);
    assert_eq!(
        api.get("/api/v1/faults?state=restored", "viewer").await["count"],
        0
    );
    let region = api.get("/api/v1/faults?region=test", "viewer").await;
    assert_eq!(region["count"], 2);
    assert_eq!(region["faults"][0]["region"], "test");
    assert_eq!(
        api.get("/api/v1/faults?region=elsewhere", "viewer").await["count"],
        0
    );
    assert_eq!(
        api.get("/api/v1/faults?since=2999-01-01T00:00:00Z", "viewer")
            .await["count"],
        0
    );
    let (status, _) = api
        .call(
            "GET",
            "/api/v1/faults?since=yesterday",
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call("GET", "/api/v1/faults/F-404", Some("viewer"), None)
        .await;
    assert_eq!(status, 404);

    // Customers, paged; contacts masked for a viewer, whole for an operator.
    let page = api
        .get("/api/v1/faults/F-1001/customers?limit=5", "viewer")
        .await;
    assert_eq!(page["total"], expected.len());
    let shown = page["customers"].as_array().unwrap();
    assert_eq!(shown.len(), 5.min(expected.len()));
    let samples = sample_customers();
    for c in shown {
        let id = c["customer_id"].as_str().unwrap();
        assert!(expected.iter().any(|e| e == id));
        let sample = samples.iter().find(|s| s.id == id).unwrap();
        if !sample.phone.is_empty() {
            assert_ne!(c["phone"], sample.phone.as_str(), "masked for a viewer");
            assert!(c["phone"].as_str().unwrap().contains('*'));
        }
    }
    let full = api
        .get("/api/v1/faults/F-1001/customers?limit=5", "operator")
        .await;
    for c in full["customers"].as_array().unwrap() {
        let sample = samples.iter().find(|s| s.id == c["customer_id"]).unwrap();
        if !sample.phone.is_empty() {
            assert_eq!(c["phone"], sample.phone.as_str());
        }
    }
    let next = api
        .get(
            "/api/v1/faults/F-1001/customers?offset=5&limit=1000",
            "viewer",
        )
        .await;
    let rest = next["customers"].as_array().unwrap();
    assert_eq!(rest.len(), (expected.len() - 5).min(1000));
    assert!(rest
        .iter()
        .all(|c| !shown.iter().any(|s| s["customer_id"] == c["customer_id"])));

    // Map layers.
    let map = api.get("/api/v1/map/faults", "viewer").await;
    assert_eq!(map["type"], "FeatureCollection");
    assert_eq!(map["features"].as_array().unwrap().len(), 2);
    let density = api.get("/api/v1/map/density?cells=16", "viewer").await;
    let cells = density["cells"].as_array().unwrap();
    let total: u64 = cells.iter().map(|c| c[2].as_u64().unwrap()).sum();
    let out: u64 = cells.iter().map(|c| c[3].as_u64().unwrap()).sum();
    assert_eq!(total as usize, samples.len());
    let f2_affected = f2["affected"].as_u64().unwrap();
    assert!(out >= expected.len() as u64 && out <= expected.len() as u64 + f2_affected);
    app.shutdown().await;
}

#[tokio::test]
async fn faults_and_their_customers_sqlite() {
    faults_and_customers(Backend::Sqlite).await;
}

#[tokio::test]
async fn faults_and_their_customers_postgres() {
    faults_and_customers(Backend::Postgres).await;
}

async fn events_over_http(backend: Backend) {
    let (app, api) = storm(backend).await;
    let event = new_event("evt-http-1", "F-HTTP");
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/events?region=north",
            Some("operator"),
            Some(event.clone()),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let (status, body) = api
        .call("POST", "/api/v1/events", Some("operator"), Some(event))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    let fault = api.get("/api/v1/faults/F-HTTP", "viewer").await;
    assert_eq!(fault["state"], "active");
    assert_eq!(
        api.get("/api/v1/faults?region=north", "viewer").await["count"],
        1
    );
    // A bad event: 422 with the reason, and it is in the dead letters.
    let bad = json!({"v":1,"event_id":"evt-http-bad","fault_id":"F-HTTP","kind":"exploded"});
    let (status, body) = api
        .call("POST", "/api/v1/events", Some("operator"), Some(bad))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("kind"), "{body}");
    let rejected = api.get("/api/v1/events/rejected", "viewer").await;
    let first = &rejected["events"][0];
    assert_eq!(first["event_id"], "evt-http-bad");
    assert!(first["payload"].as_str().unwrap().contains("exploded"));
    app.shutdown().await;
}

#[tokio::test]
async fn events_posted_over_http_take_the_mqtt_path_sqlite() {
    events_over_http(Backend::Sqlite).await;
}

#[tokio::test]
async fn events_posted_over_http_take_the_mqtt_path_postgres() {
    events_over_http(Backend::Postgres).await;
}

#[tokio::test]
async fn notices_are_searched_cancelled_and_resent() {
    // No channel is configured: notices wait in the outbox, queued.
    let (app, api) = storm(Backend::Postgres).await;
    let store = app.store.clone();
    eventually("outage notices are queued", || {
        let store = store.clone();
        async move {
            store
                .count_notices(Some("F-1001"), "outage", "queued")
                .await
                .unwrap()
                > 0
        }
    })
    .await;
    let queued = app
        .store
        .count_notices(Some("F-1001"), "outage", "queued")
        .await
        .unwrap();
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/faults/F-1001/notices/cancel",
            Some("operator"),
            Some(json!({"reason":"false alarm"})),
        )
        .await;
    assert_eq!(status, 200);
    // Outage notices and any crew dispatch notices of the fault.
    let cancelled = body["cancelled"].as_i64().unwrap();
    assert!(cancelled >= queued, "{cancelled} < {queued}");
    assert_eq!(
        app.store
            .count_notices(Some("F-1001"), "outage", "queued")
            .await
            .unwrap(),
        0
    );
    let found = api
        .get("/api/v1/notices?fault_id=F-1001&limit=1000", "viewer")
        .await;
    let notices = found["notices"].as_array().unwrap();
    assert_eq!(notices.len() as i64, cancelled.min(1000));
    assert!(notices.iter().all(
        |n| n["state"] == "suppressed" && n["reason"].as_str().unwrap().contains("false alarm")
    ));
    let one = &notices[0];
    let by_customer = api
        .get(
            &format!(
                "/api/v1/notices?customer_id={}",
                one["customer_id"].as_str().unwrap()
            ),
            "viewer",
        )
        .await;
    assert!(by_customer["notices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == one["id"]));
    let path = format!("/api/v1/notices/{}/resend", one["id"]);
    let (status, body) = api.call("POST", &path, Some("operator"), None).await;
    assert_eq!((status, &body["state"]), (200, &json!("queued")), "{body}");
    let (status, body) = api.call("POST", &path, Some("operator"), None).await;
    assert_eq!(status, 409, "a queued notice is not sent twice: {body}");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/notices/999999999/resend",
            Some("operator"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call("GET", "/api/v1/notices", Some("viewer"), None)
        .await;
    assert_eq!(status, 400, "a search names a customer or a fault");
    app.shutdown().await;
}

#[tokio::test]
async fn coordinators_override_the_plan_over_http() {
    let (app, api) = storm(Backend::Sqlite).await;
    let plan = api.get("/api/v1/assignments", "viewer").await;
    let rows = plan["assignments"].as_array().unwrap();
    let staff = api.get("/api/v1/staff", "viewer").await;
    let people = staff["staff"].as_array().unwrap();
    assert!(people
        .iter()
        .all(|p| p["phone"].as_str().is_none_or(|ph| ph.contains('*'))));
    // Someone on F-1001 qualified for a F-1002 lineworker slot moves there, pinned.
    let lineworker = rows
        .iter()
        .filter(|a| a["fault_id"] == "F-1001" && a["skill"] == "lineworker")
        .find_map(|a| a["staff_id"].as_str())
        .expect("F-1001 has a lineworker");
    let (status, body) = api
        .call("POST", "/api/v1/assignments/move", Some("coordinator"),
              Some(json!({"staff_id": lineworker, "fault_id": "F-1002", "skill": "lineworker", "why": "closer to the hospital"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let store = app.store.clone();
    let who = lineworker.to_owned();
    eventually("the re-plan keeps the move and frees the old slot", || {
        let (store, who) = (store.clone(), who.clone());
        async move {
            let plan = store.assignments().await.unwrap();
            let theirs: Vec<_> = plan
                .iter()
                .filter(|a| a.staff_id.as_ref().is_some_and(|s| s.as_str() == who))
                .collect();
            theirs.len() == 1 && theirs[0].slot.fault.as_str() == "F-1002" && theirs[0].pinned
        }
    })
    .await;
    let board = api.get("/api/v1/staff", "coordinator").await;
    let moved = board["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["staff_id"] == lineworker)
        .unwrap();
    assert_eq!(moved["assignment"]["fault_id"], "F-1002");
    assert!(
        !moved["phone"].as_str().unwrap().contains('*'),
        "coordinators call crews"
    );
    // A person without the skill cannot be pinned; an unknown person is 404.
    let call_agent = people.iter().find(|p| p["staff_id"] == "S70000").unwrap();
    assert_eq!(call_agent["skills"][0]["skill"], "call_center");
    let (status, body) = api
        .call("POST", "/api/v1/assignments/pin", Some("coordinator"),
              Some(json!({"fault_id":"F-1002","skill":"lineworker","index":1,"staff_id":"S70000","why":"x"})))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/assignments/move",
            Some("coordinator"),
            Some(json!({"fault_id":"F-1002","staff_id":"S99999","why":"x"})),
        )
        .await;
    assert_eq!(status, 404);
    // Release, then nothing left to release.
    let path = format!("/api/v1/staff/{lineworker}/release");
    let (status, _) = api
        .call(
            "POST",
            &path,
            Some("coordinator"),
            Some(json!({"why":"done"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            "POST",
            &path,
            Some("coordinator"),
            Some(json!({"why":"again"})),
        )
        .await;
    assert_eq!(status, 409);
    // Status change, validated.
    let path = format!("/api/v1/staff/{lineworker}");
    let (status, _) = api
        .call(
            "PATCH",
            &path,
            Some("coordinator"),
            Some(json!({"status":"asleep","why":"x"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = api
        .call(
            "PATCH",
            &path,
            Some("coordinator"),
            Some(json!({"status":"off_duty","why":"sick"})),
        )
        .await;
    assert_eq!(status, 200);
    let who = lineworker.to_owned();
    eventually("an off-duty person leaves the plan", || {
        let (store, who) = (store.clone(), who.clone());
        async move {
            !store
                .assignments()
                .await
                .unwrap()
                .iter()
                .any(|a| a.staff_id.as_ref().is_some_and(|s| s.as_str() == who))
        }
    })
    .await;
    // Overrides are audited with the API key as the actor.
    let audit = app.store.staffing_audit().await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.actor.starts_with("api:") && a.action == "pin"),
        "{audit:?}"
    );
    let calls = api.get("/api/v1/callcenter", "viewer").await;
    assert!(
        calls["languages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["language"] == "de"),
        "{calls}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn customers_import_and_preferences() {
    let (app, api) = storm(Backend::Sqlite).await;
    let csv = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
               C-NEW-1,A. New,11.81,53.41,+4915100000001,,,en,sms,,Europe/Berlin,,LV9,LV9 Bus 1\n\
               C-NEW-2,B. Bad,999,53.41,,,,en,sms,,Europe/Berlin,,LV9,LV9 Bus 2\n";
    let resp = api
        .http
        .post(format!("{}/api/v1/customers/import", api.base))
        .bearer_auth(&api.keys["operator"])
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["imported"], 1);
    assert_eq!(body["rejected"][0]["line"], 3, "{body}");
    let path = "/api/v1/customers/C-NEW-1/preferences";
    for bad in [
        json!({"channels":["fax"],"language":"en","quiet_hours":null}),
        json!({"channels":["sms","sms"],"language":"en","quiet_hours":null}),
        json!({"channels":["sms"],"language":"e n","quiet_hours":null}),
        json!({"channels":["sms"],"language":"en","quiet_hours":"late"}),
    ] {
        let (status, body) = api
            .call("PUT", path, Some("operator"), Some(bad.clone()))
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
    }
    let (status, body) = api
        .call(
            "PUT",
            path,
            Some("operator"),
            Some(json!({"channels":["email","sms"],"language":"ru","quiet_hours":"23:00-06:30"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let customer = api.get("/api/v1/customers/C-NEW-1", "viewer").await;
    assert_eq!(customer["channels"], json!(["email", "sms"]));
    assert_eq!(customer["language"], "ru");
    assert_eq!(customer["quiet_hours"], "23:00-06:30");
    // Imported inside F-1001's area during the outage: the reload maps them in.
    let store = app.store.clone();
    let _ = store;
    let api_ref = &api;
    eventually("the new customer is out", || async move {
        api_ref.get("/api/v1/customers/C-NEW-1", "viewer").await["out"] == true
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (app, api) = storm(Backend::Sqlite).await;
    let health = api.raw_get("/healthz", None).await;
    assert_eq!(health.status().as_u16(), 200);
    let (status, ready) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (status, ready),
        (200, json!({"database":"ok","broker":"ok"}))
    );
    let metrics = api
        .raw_get("/metrics", Some("viewer"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("faultline_events_total{status=\"applied\"} 2"),
        "{metrics}"
    );
    let expected = in_box(&sample_customers(), 11.800, 53.400, 11.825, 53.420).len();
    let out: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("faultline_customers_out "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(out >= expected as f64, "{metrics}");
    assert!(metrics.contains("faultline_faults_open 2"));
    assert!(metrics.contains("faultline_queue_depth "));
    assert!(metrics.contains("# TYPE faultline_send_latency_seconds histogram"));
    let solves: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("faultline_assignment_solve_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(solves >= 1, "the plan was solved at least once");
    // The OpenAPI document is public and names every route of the router.
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/faults",
        "/api/v1/faults/{id}",
        "/api/v1/faults/{id}/customers",
        "/api/v1/faults/{id}/notices/cancel",
        "/api/v1/map/faults",
        "/api/v1/map/density",
        "/api/v1/events",
        "/api/v1/events/rejected",
        "/api/v1/notices",
        "/api/v1/notices/{id}/resend",
        "/api/v1/staff",
        "/api/v1/staff/{id}",
        "/api/v1/staff/{id}/release",
        "/api/v1/staff/{id}/accept",
        "/api/v1/staff/{id}/decline",
        "/api/v1/staff/{id}/rested",
        "/api/v1/assignments",
        "/api/v1/assignments/pin",
        "/api/v1/assignments/move",
        "/api/v1/callcenter",
        "/api/v1/customers/import",
        "/api/v1/customers/{id}",
        "/api/v1/customers/{id}/preferences",
        "/api/v1/audit",
        "/api/v1/stream",
        "/metrics",
        "/healthz",
        "/readyz",
        "/status",
        "/status/preferences",
        "/webhooks/sms/status",
        "/webhooks/sms/inbound",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_live_stream_carries_fault_documents() {
    let (app, api) = storm(Backend::Sqlite).await;
    let refused = api.raw_get("/api/v1/stream", None).await;
    assert_eq!(refused.status().as_u16(), 401);
    let mut resp = api.raw_get("/api/v1/stream", Some("viewer")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/events",
            Some("operator"),
            Some(new_event("evt-live", "F-LIVE")),
        )
        .await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: fault") && seen.contains("F-LIVE") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    app.shutdown().await;
}
