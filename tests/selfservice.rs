//! Customers' self-service: their own status by id and token, an area's status by location,
//! their own preferences — and nothing about anyone else, whatever they ask.

mod common;

use common::api::ApiClient;
use common::*;
use faultline::api::selfservice::TokenKey;
use serde_json::json;

const F1001: &[u8] = include_bytes!("../samples/events/detected-polygon.json");

#[tokio::test]
async fn self_service_answers_customers_and_leaks_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    app.publish(&[F1001]).await;
    app.wait_events(1).await;
    let api = ApiClient::new(&app).await;
    let tokens = TokenKey::load(&app.store).await.unwrap();
    let samples = sample_customers();
    let out = in_box(&samples, 11.800, 53.400, 11.825, 53.420);
    let inside = samples.iter().find(|c| c.id == out[0]).unwrap();
    let outside = samples.iter().find(|c| !out.contains(&c.id)).unwrap();

    // Their own status, with the right token.
    let path =
        |c: &SampleCustomer, token: &str| format!("/status?customer_id={}&token={token}", c.id);
    let (status, mine) = api
        .call("GET", &path(inside, &tokens.token(&inside.id)), None, None)
        .await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["out"], true);
    assert_eq!(mine["etr"], "2026-11-23T18:00:00Z");
    assert_eq!(mine["causes"], json!(["tree_contact"]));
    assert!(mine["since"].is_string());
    let (_, theirs) = api
        .call(
            "GET",
            &path(outside, &tokens.token(&outside.id)),
            None,
            None,
        )
        .await;
    assert_eq!(theirs["out"], false);

    // Someone else's token, a made-up one, an unknown customer: one and the same answer.
    let refusals = [
        path(inside, &tokens.token(&outside.id)),
        path(inside, "AAAAAAAAAAAAAAAAAAAAAA"),
        format!(
            "/status?customer_id=C-NOBODY&token={}",
            tokens.token("C-NOBODY-ELSE")
        ),
    ];
    let mut bodies = Vec::new();
    for p in &refusals {
        let (status, body) = api.call("GET", p, None, None).await;
        assert_eq!(status, 404, "{p}");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // By location: inside the fault area, and far away. No customer is named.
    let (_, here) = api
        .call(
            "GET",
            &format!("/status?lon={}&lat={}", inside.lon, inside.lat),
            None,
            None,
        )
        .await;
    assert_eq!(here["outage"], true, "{here}");
    assert_eq!(here["etr"], "2026-11-23T18:00:00Z");
    let text = here.to_string();
    for c in &samples {
        assert!(!text.contains(&c.id), "a location answer names {}", c.id);
        assert!(c.phone.is_empty() || !text.contains(&c.phone));
    }
    let (_, away) = api
        .call("GET", "/status?lon=12.5&lat=54.0", None, None)
        .await;
    assert_eq!(away["outage"], false);
    let (status, _) = api.call("GET", "/status?lon=200&lat=0", None, None).await;
    assert_eq!(status, 400);
    let (status, _) = api.call("GET", "/status", None, None).await;
    assert_eq!(status, 400);

    // Their own preferences, with their token only.
    let prefs = json!({"channels":["email"],"language":"zh","quiet_hours":null});
    let put = |c: &SampleCustomer, token: String| {
        format!("/status/preferences?customer_id={}&token={token}", c.id)
    };
    let (status, _) = api
        .call(
            "PUT",
            &put(inside, tokens.token(&outside.id)),
            None,
            Some(prefs.clone()),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = api
        .call(
            "PUT",
            &put(inside, tokens.token(&inside.id)),
            None,
            Some(prefs),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, mine) = api
        .call("GET", &path(inside, &tokens.token(&inside.id)), None, None)
        .await;
    assert_eq!(
        mine["preferences"],
        json!({"channels":["email"],"language":"zh","quiet_hours":null})
    );
    app.shutdown().await;
}

#[tokio::test]
async fn self_service_is_rate_limited_per_client() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.restart_with(faultline::clock::Clock::System, |s| {
        s.api.public_rate_per_sec = 1.0;
        s.api.public_burst = 3.0;
    })
    .await;
    let api = ApiClient::new(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = api.raw_get("/status?lon=12.5&lat=54.0", None).await;
        statuses.push((
            resp.status().as_u16(),
            resp.headers().get("retry-after").cloned(),
        ));
    }
    assert_eq!(
        statuses.iter().filter(|(s, _)| *s == 200).count(),
        3,
        "{statuses:?}"
    );
    let (status, retry) = &statuses[4];
    assert_eq!(*status, 429);
    assert_eq!(retry.as_ref().unwrap(), "1");
    // The operators' API is not behind the public limit.
    for _ in 0..5 {
        api.get("/api/v1/faults", "viewer").await;
    }
    app.shutdown().await;
}
