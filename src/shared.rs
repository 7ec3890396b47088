//! The outage book shared between the engine (the only writer) and readers (status, API).

use crate::domain::CustomerId;
use crate::mapping::CustomerIndex;
use crate::outage::{OutageBook, OutageRules};
use crate::store::{Store, StoreError};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A cheaply cloned handle on the book. Locks are held for microseconds to milliseconds and
/// never across an `.await`.
#[derive(Debug, Clone)]
pub struct SharedBook(Arc<RwLock<OutageBook>>);

impl SharedBook {
    pub fn new(book: OutageBook) -> Self {
        Self(Arc::new(RwLock::new(book)))
    }

    /// A panic elsewhere must not take the daemon down with it: a poisoned lock still holds a
    /// consistent book, because the book is only changed by whole, non-panicking steps.
    pub fn read(&self) -> RwLockReadGuard<'_, OutageBook> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, OutageBook> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Rebuilds the book from the database: the customer index, every fault, and each open fault's
/// current members. Returns the book and the customers' change watermark.
pub async fn load_book(store: &Store, rules: OutageRules) -> Result<(OutageBook, i64), StoreError> {
    let (customers, watermark) = store.mapped_customers_since(0).await?;
    let index = CustomerIndex::build(customers);
    let mut faults = std::collections::HashMap::new();
    for row in store.load_faults().await? {
        let fault = row.into_fault()?;
        faults.insert(fault.id.as_str().to_owned(), fault);
    }
    for (fault_id, customer_id) in store.load_current_members().await? {
        let idx = CustomerId::parse(&customer_id)
            .ok()
            .and_then(|id| index.idx_of(&id));
        if let (Some(fault), Some(idx)) = (faults.get_mut(&fault_id), idx) {
            fault.affected.push(idx);
        }
    }
    for (fault_id, n) in store.restored_counts().await? {
        if let Some(fault) = faults.get_mut(&fault_id) {
            fault.restored_count = n as u64;
        }
    }
    let mut episodes = Vec::new();
    for (customer_id, started_ms) in store.open_episodes().await? {
        let idx = CustomerId::parse(&customer_id)
            .ok()
            .and_then(|id| index.idx_of(&id));
        if let Some(idx) = idx {
            episodes.push((idx, crate::store::from_millis(started_ms)?));
        }
    }
    let book = OutageBook::restore(index, rules, faults.into_values().collect(), episodes);
    Ok((book, watermark))
}
