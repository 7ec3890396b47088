//! The web console: plain HTML, JavaScript and CSS compiled into the binary (no build step, no
//! internet), and the OpenAPI document. The page itself holds no data; it asks the API for
//! everything with the key its user enters.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::ApiState;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/console.js");
const STYLE: &str = include_str!("../../web/console.css");
const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/console.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/console.css", get(|| async { asset("text/css", STYLE) }))
        .route("/console/config", get(config))
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn index(State(state): State<ApiState>) -> impl IntoResponse {
    // Scripts only from here; images also from the tile server when one is configured.
    let tiles = tile_origin(&state.tile_url).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' data: {tiles}; style-src 'self'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        INDEX,
    )
}

fn tile_origin(template: &str) -> Option<String> {
    let url = url::Url::parse(&template.replace(['{', '}'], "")).ok()?;
    Some(url.origin().ascii_serialization())
}

/// What the page needs before it has a key: the tile template (empty: none).
async fn config(State(state): State<ApiState>) -> impl IntoResponse {
    Json(json!({ "tile_url": state.tile_url }))
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
