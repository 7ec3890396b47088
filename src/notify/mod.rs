//! Notices: which channel, what words, and the worker that sends the outbox.

pub mod inbound;
pub mod intents;
pub mod jobs;
pub mod pause;
pub mod plan;
mod sender;
pub mod supersede;
pub mod templates;
pub mod worker;
