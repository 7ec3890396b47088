//! Time as the daemon sees it. Injected so tests can hold the clock still or move it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A source of "now".
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A clock that moves only when told to (tests, simulations).
    Manual(Arc<Mutex<DateTime<Utc>>>),
    /// The system clock moved by a fixed amount (the demo, which replays a storm).
    Ahead(chrono::Duration),
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Ahead(by) => Utc::now() + *by,
            Self::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock; no effect on the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Self::Manual(t) = self {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = to;
        }
    }
}
