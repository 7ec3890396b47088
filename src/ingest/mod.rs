//! Ingest: MQTT payloads → validated events → one committed batch → acknowledgements.

pub mod event;
