//! API keys and roles. A key is `fl_<id>_<secret>`: the id is public (lists, audit log), the
//! secret is 256 random bits kept only as its SHA-256. Every `/api/v1` call but the OpenAPI
//! document carries one (`Authorization: Bearer …`); handlers state the role they need by the
//! extractor they take ([`Viewer`], [`Operator`], [`Coordinator`]).

use std::fmt;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};
use crate::store::{ApiAuditRow, ApiKeyRow, Store, StoreError, CUSTOMER_PATHS, CUSTOMER_ROUTE};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Grid and customer operations: events, notices, customers; sees contacts unmasked.
    Operator,
    /// Emergency coordination: staff status, pins, moves, answers on staff's behalf.
    Coordinator,
    /// Reads everything, contacts masked; writes nothing.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Coordinator => "coordinator",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Self::Operator),
            "coordinator" => Ok(Self::Coordinator),
            "viewer" => Ok(Self::Viewer),
            other => Err(format!(
                "unknown role `{other}` (operator, coordinator or viewer)"
            )),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
}

impl Caller {
    /// Customers' contacts (phones, e-mails) are shown in full to operators only.
    pub fn sees_contacts(&self) -> bool {
        self.role == Role::Operator
    }

    /// Staff's contacts are shown in full to coordinators only: they call crews, operators
    /// never do. A crew member's number is often a private mobile, reachable at night; each
    /// role sees the personal data its work needs and no more (docs/API.md).
    pub fn sees_staff_contacts(&self) -> bool {
        self.role == Role::Coordinator
    }

    /// Who did it, for audit trails written by other layers.
    pub fn actor(&self) -> String {
        format!("api:{}", self.key_id)
    }
}

/// A new key: its listing row and the full key, shown once.
pub struct NewKey {
    pub row: ApiKeyRow,
    pub key: String,
}

/// Creates and stores a key.
pub async fn create_key(
    store: &Store,
    name: &str,
    role: Role,
    now: i64,
) -> Result<NewKey, StoreError> {
    let mut rng = rand::rng();
    let id = format!("{:08x}", rng.next_u32());
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let row = ApiKeyRow {
        id: id.clone(),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        created_at: now,
        revoked_at: None,
    };
    store.create_api_key(&row, &hash(&secret)).await?;
    Ok(NewKey {
        row,
        key: format!("fl_{id}_{secret}"),
    })
}

fn hash(secret: &str) -> String {
    crate::domain::hex(&Sha256::digest(secret.as_bytes()))
}

/// Equal without an early exit, so timing tells nothing about how much of a hash matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves the caller from the request's key; 401 without a valid one.
async fn caller(store: &Store, parts: &Parts) -> Result<Caller, ApiError> {
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "this call needs an API key: send `Authorization: Bearer fl_…`".into(),
            )
        })?;
    let unknown = || ApiError::Unauthorized("unknown or revoked API key".into());
    let (id, secret) = presented
        .trim()
        .strip_prefix("fl_")
        .and_then(|rest| rest.split_once('_'))
        .ok_or_else(unknown)?;
    let (role, stored) = store.api_key(id).await?.ok_or_else(unknown)?;
    if !constant_time_eq(hash(secret).as_bytes(), stored.as_bytes()) {
        return Err(unknown());
    }
    let role = role
        .parse()
        .map_err(|e: String| ApiError::Store(StoreError::Corrupt(e)))?;
    Ok(Caller {
        key_id: id.to_owned(),
        role,
    })
}

/// Middleware for `/api/v1` and `/metrics`: authenticates, then audits every write.
pub async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let who = match caller(&state.store, &parts).await {
        Ok(who) => who,
        Err(refusal) => return refusal.into_response(),
    };
    parts.extensions.insert(who.clone());
    let method = parts.method.clone();
    // Inside `nest` the URI is stripped of the prefix; the audit wants the path as called.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| parts.uri.path().to_owned(), |u| u.path().to_owned());
    let path = audited_path(&method, path);
    let response = next.run(Request::from_parts(parts, body)).await;
    if method != Method::GET && method != Method::HEAD {
        let row = ApiAuditRow {
            at: crate::store::millis(state.clock.now()),
            key_id: who.key_id.clone(),
            role: who.role.as_str().to_owned(),
            method: method.to_string(),
            path,
            status: i64::from(response.status().as_u16()),
        };
        if let Err(e) = state.store.record_api_write(&row).await {
            tracing::error!(error = %e, "cannot write the API audit log");
        }
        tracing::info!(key = %row.key_id, role = %row.role, method = %row.method, path = %row.path, status = row.status, "API write");
    }
    response
}

/// The path an audit row keeps: the path as called, but an erasure's by its route, since the
/// id in it is the person erased (docs/DATA.md, "Erasure").
fn audited_path(method: &Method, path: String) -> String {
    if method == Method::DELETE && path.starts_with(CUSTOMER_PATHS) {
        CUSTOMER_ROUTE.to_owned()
    } else {
        path
    }
}

/// Takes the caller the middleware found and checks its role.
fn require(parts: &Parts, allowed: &[Role], what: &str) -> Result<Caller, ApiError> {
    let who = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized("this call needs an API key".into()))?;
    if allowed.contains(&who.role) {
        return Ok(who);
    }
    let needed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(ApiError::Forbidden(format!(
        "{what} needs the {} role; key {} has the {} role",
        needed.join(" or "),
        who.key_id,
        who.role
    )))
}

macro_rules! role_extractor {
    ($name:ident, $what:literal, [$($role:ident),+]) => {
        #[doc = concat!("A caller allowed to ", $what, ".")]
        pub struct $name(pub Caller);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;
            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
                require(parts, &[$(Role::$role),+], $what).map(Self)
            }
        }
    };
}

role_extractor!(Viewer, "read", [Viewer, Operator, Coordinator]);
role_extractor!(Operator, "change events, notices and customers", [Operator]);
role_extractor!(Coordinator, "change staffing", [Coordinator]);
role_extractor!(Eraser, "erase customers", [Coordinator]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for role in [Role::Operator, Role::Coordinator, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().unwrap_err().contains("admin"));
    }

    #[test]
    fn erasures_are_audited_without_the_id() {
        let path = |m: Method, p: &str| audited_path(&m, p.to_owned());
        assert_eq!(
            path(Method::DELETE, "/api/v1/customers/C-17"),
            "/api/v1/customers/{id}"
        );
        assert_eq!(
            path(Method::PUT, "/api/v1/customers/C-17/preferences"),
            "/api/v1/customers/C-17/preferences"
        );
        assert_eq!(path(Method::DELETE, "/api/v1/staff/S1"), "/api/v1/staff/S1");
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
