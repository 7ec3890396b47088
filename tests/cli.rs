//! The command line as an operator uses it: the real binary, a real SQLite file, Mosquitto.

mod common;

use std::process::Command;

use common::*;

fn faultline(db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.env("FAULTLINE__DATABASE__URL", db)
        .env("FAULTLINE__MQTT__URL", mqtt_url())
        .env_remove("RUST_LOG");
    cmd
}

#[tokio::test]
async fn import_reports_bad_rows_by_line_and_imports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let file = dir.path().join("customers.csv");
    std::fs::write(
        &file,
        "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
         C1,A,11.8,53.4,+4915161973069,,,de,sms,,Europe/Berlin,,LV1,LV1 Bus 1\n\
         C2,B,11.8,53.4,12345,,,de,sms,,Europe/Berlin,,LV1,LV1 Bus 1\n",
    )
    .unwrap();
    let out = faultline(&db)
        .args(["import", "customers"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "some rows rejected");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("customers.csv:3: `phone`"), "{stderr}");
    assert!(
        !stderr.contains("12345"),
        "contacts are not echoed: {stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 imported, 1 rejected"));
    // Idempotent: importing again upserts the same row.
    let again = faultline(&db)
        .args(["import", "customers"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
    let store = faultline::store::Store::connect(&db, 1).await.unwrap();
    assert_eq!(store.count_customers().await.unwrap(), 1);

    let staff = faultline(&db)
        .args(["import", "staff", "samples/staff.csv"])
        .output()
        .unwrap();
    assert!(
        staff.status.success(),
        "{}",
        String::from_utf8_lossy(&staff.stderr)
    );
    assert_eq!(store.count_staff().await.unwrap(), 240);
}

#[test]
fn config_masks_secrets_and_names_bad_keys() {
    let out = faultline("postgres://app:s3cret@db/faultline")
        .arg("config")
        .env("FAULTLINE__MQTT__PASSWORD", "hunter2")
        .env("FAULTLINE__NOTIFY__MOMENTARY_DELAY_SECS", "120")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(
        text.contains("momentary_delay_secs = 120"),
        "env overrides apply: {text}"
    );
    let bad = faultline("sqlite://x.db")
        .arg("config")
        .env("FAULTLINE__MQTT__STATUS_TOPIC", "a/#")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("mqtt.status_topic"));
}

#[tokio::test]
async fn migrate_creates_the_schema_and_publish_reaches_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("m.db").display());
    assert!(faultline(&db).arg("migrate").status().unwrap().success());
    let store = faultline::store::Store::connect(&db, 1).await.unwrap();
    assert_eq!(store.count_customers().await.unwrap(), 0);

    let prefix = unique_prefix();
    let mut received = subscribe(&format!("{prefix}/faultline/v1/events/#")).await;
    let out = faultline(&db)
        .env(
            "FAULTLINE__MQTT__TOPIC",
            format!("{prefix}/faultline/v1/events/#"),
        )
        .args([
            "publish",
            "--region",
            "schwerin",
            "samples/events/detected-radius.json",
        ])
        .output()
        .unwrap();
    let topic = sample_event_arrives(&out, &mut received).await;
    assert_eq!(
        topic,
        format!("{prefix}/faultline/v1/events/schwerin/F-1002")
    );
}
