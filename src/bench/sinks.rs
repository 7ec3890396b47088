//! Local stand-ins for the providers, for the fan-out benchmark: one HTTP server that accepts
//! every FCM and Twilio request, and an SMTP sink. They count what they accept and note when
//! the first one arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the sinks accepted.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: AtomicU64,
    pub first: OnceLock<Instant>,
}

impl Tally {
    fn accept(&self) {
        self.first.get_or_init(Instant::now);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Serves FCM's `messages:send` and Twilio's `Messages.json`, accepting everything; returns
/// the base URL.
pub async fn http(tally: Arc<Tally>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (push, sms) = (tally.clone(), tally);
    let router = Router::new()
        .route(
            "/v1/projects/{project}/messages:send",
            post(move || async move {
                push.accept();
                Json(json!({"name": "projects/bench/messages/1"}))
            }),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(move || async move {
                sms.accept();
                (
                    axum::http::StatusCode::CREATED,
                    Json(json!({"sid": "SMbench", "status": "queued"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// An SMTP server that accepts every message; returns its port.
pub async fn smtp(tally: Arc<Tally>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Without this, Nagle's algorithm and delayed ACKs hold each SMTP reply ~40 ms.
            let _ = stream.set_nodelay(true);
            let tally = tally.clone();
            tokio::spawn(async move {
                let _ = smtp_session(stream, &tally).await;
            });
        }
    });
    Ok(port)
}

async fn smtp_session(stream: tokio::net::TcpStream, tally: &Tally) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                tally.accept();
                write.write_all(b"250 OK queued\r\n").await?;
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 OK\r\n",
        };
        write.write_all(answer).await?;
    }
    Ok(())
}
