//! Notices: which channel, what words, and the worker that sends the outbox.

pub mod inbound;
pub mod plan;
pub mod templates;
pub mod worker;
