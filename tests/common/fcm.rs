//! A wiremock server that speaks FCM HTTP v1 for project `grid-app`: the token `tok-dead` is
//! unregistered (FCM's 404 error body), every other message with the bearer token
//! `fcm-token` is accepted with FCM's message name.

use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The send endpoint of project `grid-app`.
pub const SEND: &str = "/v1/projects/grid-app/messages:send";
/// The message name the server answers an accepted message with.
pub const MESSAGE_NAME: &str = "projects/grid-app/messages/0:1500415314455276%31bd1c9631bd1c96";

pub async fn fcm() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(body_string_contains("tok-dead"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(header("authorization", "Bearer fcm-token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": MESSAGE_NAME})),
        )
        .with_priority(5)
        .mount(&server)
        .await;
    server
}
