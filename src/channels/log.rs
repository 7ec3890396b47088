//! The `log` channel: every notice as one JSON line, contacts masked. The demo's channel and a
//! dry run for a deployment whose real channels are not configured yet.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

use super::{ChannelError, Outbound};
use crate::domain::{mask_middle, Channel, Email, Phone};

/// Where the lines go.
#[derive(Debug, Clone)]
pub struct LogChannel {
    /// `None` is stdout.
    path: Option<PathBuf>,
}

impl LogChannel {
    /// `-` means stdout.
    pub fn new(path: &str) -> Self {
        Self {
            path: (path != "-").then(|| PathBuf::from(path)),
        }
    }

    /// Appends one line per notice and flushes before reporting success, so a notice counts as
    /// sent only once its line is written.
    pub async fn send_all(&self, batch: &[Outbound]) -> Vec<Result<String, ChannelError>> {
        let mut text = String::new();
        for n in batch {
            let line = serde_json::json!({
                "notice_id": n.notice_id,
                "customer_id": n.customer_id,
                "fault_id": n.fault_id,
                "kind": n.kind,
                "channel": n.channel.as_str(),
                "to": masked(n.channel, &n.address),
                "language": n.language,
                "title": n.title,
                "body": n.body,
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let written = match &self.path {
            None => {
                let mut out = tokio::io::stdout();
                match out.write_all(text.as_bytes()).await {
                    Ok(()) => out.flush().await,
                    Err(e) => Err(e),
                }
            }
            Some(path) => append(path, text.as_bytes()).await,
        };
        batch
            .iter()
            .map(|n| match &written {
                Ok(()) => Ok(format!("log-{}", n.notice_id)),
                Err(e) => Err(ChannelError::transient(format!(
                    "cannot write the notice log: {e}"
                ))),
            })
            .collect()
    }
}

async fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.sync_data().await
}

fn masked(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Sms => Phone::parse(address)
            .map(|p| p.masked())
            .unwrap_or_else(|_| "***".into()),
        Channel::Email => Email::parse(address)
            .map(|e| e.masked())
            .unwrap_or_else(|_| "***".into()),
        Channel::Push => mask_middle(address, 4, 0),
    }
}
