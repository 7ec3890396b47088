//! Ingest: MQTT payloads → validated events → one committed batch → acknowledgements.

pub mod engine;
pub mod event;
pub mod mqtt;
pub mod publish;
