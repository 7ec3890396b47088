//! The e-mail channel's SMTP connections (`channels::smtp`) against a real SMTP server that
//! counts what it sees: connections are reused without a NOOP before each message, and a
//! connection the relay closes (its limit of messages per connection, answered with 421, as
//! Exchange and others do) is replaced without failing the message.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use faultline::channels::email::EmailChannel;
use faultline::channels::Outbound;
use faultline::config::Settings;
use faultline::domain::Channel;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    noops: AtomicUsize,
    messages: Mutex<Vec<String>>,
}

/// An SMTP server on port 0 that takes at most `per_connection` messages on one connection and
/// answers the next `MAIL` with 421 and closes it.
async fn relay(per_connection: usize) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(session(stream, shared.clone(), per_connection));
        }
    });
    (port, seen)
}

async fn session(stream: TcpStream, seen: Arc<Seen>, per_connection: usize) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let (mut taken, mut data, mut in_data) = (0, String::new(), false);
    write.write_all(b"220 test ESMTP\r\n").await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        if in_data {
            if line == "." {
                in_data = false;
                taken += 1;
                seen.messages
                    .lock()
                    .unwrap()
                    .push(std::mem::take(&mut data));
                write.write_all(b"250 queued\r\n").await.unwrap();
            } else {
                data.push_str(&line);
                data.push('\n');
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-test\r\n250 8BITMIME\r\n",
            "NOOP" => {
                seen.noops.fetch_add(1, Ordering::SeqCst);
                b"250 OK\r\n"
            }
            "MAIL" if taken >= per_connection => {
                let _ = write
                    .write_all(b"421 4.7.0 too many messages, closing\r\n")
                    .await;
                return;
            }
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 OK\r\n",
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

fn channel(port: u16) -> EmailChannel {
    let mut settings = Settings::defaults().channels.email;
    settings.host = "127.0.0.1".into();
    settings.port = port;
    settings.tls = "none".into();
    settings.from = "Grid Notices <outages@utility.example>".into();
    settings.pool_size = 4;
    EmailChannel::new(&settings).unwrap()
}

/// E-mail notice number `id`.
fn notice(id: i64) -> Outbound {
    common::notice(id, Channel::Email, &format!("c{id}@example.net"))
}

#[tokio::test]
async fn messages_share_a_connection_without_a_noop_each() {
    let (port, seen) = relay(usize::MAX).await;
    let email = channel(port);
    for id in 1..=3 {
        let message_id = email.send(&notice(id)).await.unwrap();
        assert_eq!(message_id, format!("<notice-{id}@utility.example>"));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.noops.load(Ordering::SeqCst), 0);
    let messages = seen.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 3);
    for (i, message) in messages.iter().enumerate() {
        assert!(message.contains(&format!("Notice number {}.", i + 1)));
    }
}

#[tokio::test]
async fn a_connection_the_relay_closed_is_replaced_without_failing_the_message() {
    let (port, seen) = relay(1).await;
    let email = channel(port);
    for id in 1..=3 {
        email.send(&notice(id)).await.unwrap();
    }
    // Each message after the first met a 421 on the pooled connection, then went out on a new
    // one: three connections, three messages, no error.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    assert_eq!(seen.messages.lock().unwrap().len(), 3);
}
