//! The web console end to end: Debian's headless Chromium, driven by Playwright
//! (`tests/e2e/console.mjs`), loads the console of a real daemon during a scripted storm, sees
//! a fault appear on the map and in the table without reloading, and moves a crew member on
//! the staffing board. The screenshot is kept in `target/e2e/console.png`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use faultline::api::auth::{create_key, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_storm_live_and_moves_a_crew_member() {
    let app = spawn_app(Backend::Sqlite).await;
    app.import_staff().await;
    app.publish(&[include_bytes!("../samples/events/detected-polygon.json")])
        .await;
    app.wait_events(1).await;
    let key = create_key(&app.store, "console test", Role::Coordinator, 0)
        .await
        .unwrap()
        .key;
    let root = env!("CARGO_MANIFEST_DIR");
    let shots = format!("{root}/target/e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = format!("{shots}/console.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = Command::new("node")
        .arg(format!("{root}/tests/e2e/console.mjs"))
        .env(
            "BASE_URL",
            format!("http://{}", app.running.as_ref().unwrap().api_addr),
        )
        .env("API_KEY", &key)
        .env("FIRST_FAULT", "F-1001")
        .env("SCREENSHOT", &shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test.sh installs Node.js, Chromium and playwright-core)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut out = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = tokio::task::block_in_place(|| out.next()).unwrap().unwrap();
    assert_eq!(ready, "READY");

    // The storm goes on: a critical fault arrives while the console is open.
    app.publish(&[include_bytes!("../samples/events/detected-radius.json")])
        .await;
    writeln!(stdin, "F-1002").unwrap();
    let moved = tokio::task::block_in_place(|| out.next()).unwrap().unwrap();
    let staff_id = moved
        .strip_prefix("MOVED ")
        .expect("MOVED <staff>")
        .to_owned();
    let status = tokio::task::block_in_place(|| browser.wait()).unwrap();
    assert!(status.success(), "the browser script failed");

    // The move is the coordinator's pin, in the database, audited with the console's key.
    let plan = app.store.assignments().await.unwrap();
    assert!(plan.iter().any(|a| a.pinned
        && a.slot.fault.as_str() == "F-1002"
        && a.staff_id.as_ref().is_some_and(|s| s.as_str() == staff_id)));
    let audit = app.store.api_audit(10).await.unwrap();
    assert!(audit
        .iter()
        .any(|w| w.path == "/api/v1/assignments/move" && w.status == 200));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    app.shutdown().await;
}
