//! faultline: outage notification and emergency response dispatcher for electric utilities.
//!
//! Data flows one way: [`ingest`] turns MQTT payloads into stored, validated events; [`outage`]
//! keeps fault state and the customers each fault holds out, using [`mapping`]; [`store`] holds
//! every SQL statement; [`status`] publishes the retained per-fault documents; [`app`] wires
//! the tasks together and shuts them down in order.

pub mod api;
pub mod app;
pub mod bench;
pub mod broker;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod directory;
pub mod domain;
pub mod ingest;
pub mod mapping;
pub mod notify;
pub mod outage;
pub mod shared;
pub mod staffing;
pub mod status;
pub mod store;
pub mod telemetry;
