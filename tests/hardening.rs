//! Hardening against a real daemon (issue 25, point 7): the public routes check the client's
//! rate before anything else and take bodies of a few KB; values that could forge a log line
//! are refused or escaped, and reasons quote them cut short in every copy (database, dead
//! letter, API); a circle has a maximum radius; customer import bounds and validates its
//! fields; staff contacts are for coordinators.

mod common;

use std::time::Duration;

use common::api::{ApiClient, ROLES};
use common::*;
use faultline::api::selfservice::TokenKey;
use faultline::clock::Clock;
use faultline::store::EventStatus;
use serde_json::{json, Value};

const HEADER: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n";

/// A client that opens a connection per request: the daemon may close the connection of a
/// refused body, and a pooled client could try to send the next request on it.
fn one_shot_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn public_routes_check_the_rate_first_and_take_small_bodies() {
    let mut app = spawn_app(Backend::Sqlite).await;
    // Four requests, then a token every 100 s: nothing refills while the test runs.
    app.restart_with(Clock::System, |s| {
        s.api.public_rate_per_sec = 0.01;
        s.api.public_burst = 4.0;
    })
    .await;
    let api = ApiClient::new(&app).await;
    let http = one_shot_client();
    let customer = "C7000000";
    let token = TokenKey::load(&app.store).await.unwrap().token(customer);
    let url = format!(
        "{}/status/preferences?customer_id={customer}&token={token}",
        api.base
    );
    let put = |body: Vec<u8>| {
        http.put(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let big = vec![b' '; 16 * 1024];

    // Within the rate: a body over 4 KiB is 413, a malformed one 400, a good one 200.
    let resp = put(big.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let refusal: Value = resp.json().await.unwrap();
    assert_eq!(refusal["error"], "too_large", "{refusal}");
    let resp = put(b"{".to_vec()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let prefs = br#"{"channels":["sms"],"language":"de","quiet_hours":null}"#;
    let resp = put(prefs.to_vec()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = api.raw_get("/status?lon=12.5&lat=54.0", None).await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the fourth request of the burst"
    );

    // The 413 and the 400 took their tokens: the bucket is empty, and the rate is checked
    // before the body, so even an oversized body is 429 now.
    for body in [big.clone(), b"{".to_vec(), prefs.to_vec()] {
        let resp = put(body).await.unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert!(resp.headers().contains_key("retry-after"));
    }

    // The operators' API keeps its own limit (api.max_body_bytes): the same padding passes.
    let padded = format!(
        "{}{}",
        " ".repeat(16 * 1024),
        r#"{"channels":["email"],"language":"en","quiet_hours":null}"#
    );
    let resp = http
        .put(format!(
            "{}/api/v1/customers/{customer}/preferences",
            api.base
        ))
        .bearer_auth(&api.keys["operator"])
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    app.shutdown().await;
}

async fn hostile_events_are_refused_or_cut(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = ApiClient::new(&app).await;
    let mut letters = subscribe(&app.settings.mqtt.deadletter_topic).await;
    let event = json!({"v":1,"event_id":"evt-h1","fault_id":"F-H1","kind":"detected",
        "occurred_at":"2026-11-23T15:00:00Z","area":{"type":"Point","coordinates":[11.86,53.45]},
        "radius_m":200});

    // A region holding a line break names no topic: refused before the event is queued.
    let path = "/api/v1/events?region=north%0D%0AINFO%20forged";
    let (status, body) = api
        .call("POST", path, Some("operator"), Some(event.clone()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("region"),
        "{body}"
    );

    // A fault id with a line break and a 300 KB `kind`: every copy of the reason is short.
    let hostile = json!({"v":1,"event_id":"evt-h2","fault_id":"F-H2\r\nINFO forged",
        "kind":"k".repeat(300_000),"occurred_at":"2026-11-23T15:00:00Z","devices":["x"]});
    let (status, body) = api
        .call("POST", "/api/v1/events", Some("operator"), Some(hostile))
        .await;
    assert_eq!(status, 422, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.len() < 2000 && reason.contains(" characters) is not one of"),
        "{reason}"
    );
    let stored = app
        .store
        .list_events(Some(EventStatus::Rejected), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(stored.fault_id.as_deref(), Some(r"F-H2\r\nINFO forged"));
    assert!(stored.topic.ends_with("/http/unknown"), "{}", stored.topic);
    let stored_reason = stored.reason.unwrap();
    assert!(
        stored_reason.len() < 2000 && !stored_reason.contains(['\r', '\n']),
        "{stored_reason}"
    );
    let listing = api.get("/api/v1/events/rejected", "viewer").await;
    assert_eq!(listing["events"][0]["fault_id"], r"F-H2\r\nINFO forged");
    assert!(
        listing.to_string().len() < 20_000,
        "{} bytes",
        listing.to_string().len()
    );
    let (_, letter, _) = tokio::time::timeout(Duration::from_secs(10), letters.recv())
        .await
        .unwrap()
        .unwrap();
    let letter: Value = serde_json::from_slice(&letter).unwrap();
    assert_eq!(letter["fault_id"], r"F-H2\r\nINFO forged");
    assert!(letter["reason"].as_str().unwrap().len() < 2000);

    // A circle of 1e308 m would put everyone out: beyond the 200 km maximum, refused.
    let mut huge_circle = event;
    huge_circle["radius_m"] = json!(1e308);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/events",
            Some("operator"),
            Some(huge_circle),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("at most 200000"),
        "{body}"
    );
    let (status, _) = api
        .call("GET", "/api/v1/faults/F-H1", Some("viewer"), None)
        .await;
    assert_eq!(status, 404, "the fault was never opened");
    app.shutdown().await;
}

async fn customer_import_bounds_and_validates_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = ApiClient::new(&app).await;
    let token = "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx_ok";
    let csv = format!(
        "{HEADER}X1,A. Good,11.81,53.41,,,{token},en,push,,Europe/Berlin,,LV9,LV9 Bus 1\n\
         X2,\"B.\r\nINFO forged\",11.81,53.41,,,,en,,,,,,\n\
         X3,C\0,11.81,53.41,,,,en,,,,,,\n\
         X4,{big},11.81,53.41,,,,en,,,,,,\n\
         X5,E,11.81,53.41,,,tok en,en,push,,,,,\n",
        big = "n".repeat(1_000_000)
    );
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
    assert_eq!(body["imported"], 1, "{body}");
    let reasons: Vec<&str> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4, "{body}");
    assert!(reasons[0].contains("control character"), "{reasons:?}");
    assert!(reasons[1].contains("control character"), "{reasons:?}");
    assert!(reasons[2].contains("longer than 4096"), "{reasons:?}");
    assert!(reasons[3].contains("push token"), "{reasons:?}");
    assert!(body.to_string().len() < 2000, "no value is echoed whole");

    // The token went through the store as it came, on this backend.
    let contacts = app.store.contacts(&["X1".to_owned()]).await.unwrap();
    assert_eq!(contacts[0].push_token.as_deref(), Some(token));
    for refused in ["X2", "X3", "X4", "X5"] {
        assert!(
            app.store.customer(refused).await.unwrap().is_none(),
            "{refused}"
        );
    }
    app.shutdown().await;
}

both_backends!(
    hostile_events_are_refused_or_cut,
    customer_import_bounds_and_validates_fields
);

#[tokio::test]
async fn staff_contacts_are_shown_to_coordinators_only() {
    let app = spawn_app(Backend::Sqlite).await;
    let staff = app.import_staff().await;
    let api = ApiClient::new(&app).await;
    let person = staff
        .iter()
        .find(|s| s.phone.is_some() && s.email.is_some())
        .unwrap();
    let phone = person.phone.as_ref().unwrap().as_str();
    let email = person.email.as_ref().unwrap().as_str();
    for role in ROLES {
        let list = api.get("/api/v1/staff", role).await;
        let row = list["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["staff_id"] == person.id.as_str())
            .unwrap();
        let full = role == "coordinator";
        assert_eq!(row["phone"] == phone, full, "{role}: {row}");
        assert_eq!(row["email"] == email, full, "{role}: {row}");
        if !full {
            assert!(
                row["phone"].as_str().unwrap().contains('*'),
                "{role}: {row}"
            );
        }
    }
    app.shutdown().await;
}
