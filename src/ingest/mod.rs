//! Ingest: MQTT payloads → validated events → one committed batch → acknowledgements, and the
//! dead letters of rejected payloads, published from the stored rows.

pub mod deadletter;
pub mod engine;
pub mod event;
pub mod mqtt;
pub mod publish;
