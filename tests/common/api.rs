//! An HTTP client for the daemon's API with one key per role.

use std::collections::HashMap;

use serde_json::Value;

use super::TestApp;
use faultline::api::auth::{create_key, Role};

pub const ROLES: [&str; 3] = ["operator", "coordinator", "viewer"];

pub struct ApiClient {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: HashMap<&'static str, String>,
}

impl ApiClient {
    /// Creates a key for each role in the app's database.
    pub async fn new(app: &TestApp) -> Self {
        let addr = app.running.as_ref().unwrap().api_addr;
        let mut keys = HashMap::new();
        for role in ROLES {
            let key = create_key(
                &app.store,
                &format!("test {role}"),
                role.parse::<Role>().unwrap(),
                0,
            )
            .await
            .unwrap();
            keys.insert(role, key.key);
        }
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            keys,
        }
    }

    /// Sends a request as `role` (None: no key); returns the status and the JSON body (Null
    /// when the body is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        role: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(role) = role {
            req = req.bearer_auth(&self.keys[role]);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET as `role` (None: no key), answered as it came: for headers, text and streams.
    pub async fn raw_get(&self, path: &str, role: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(role) = role {
            req = req.bearer_auth(&self.keys[role]);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, role: &str) -> Value {
        let (status, body) = self.call("GET", path, Some(role), None).await;
        assert_eq!(status, 200, "GET {path} as {role}: {body}");
        body
    }
}
