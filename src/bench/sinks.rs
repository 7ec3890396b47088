//! Local stand-ins for the providers, for the fan-out benchmark: one HTTP server that accepts
//! every FCM and Twilio request, and an SMTP sink. They count what they accept and note when
//! the first one arrived.
//!
//! They run on a thread of their own (`bench-sinks`) so the bench can tell their CPU time from
//! the daemon's: on a machine of two cores the stand-ins compete with the daemon for the same
//! cores, which a real provider, on machines of its own, does not. And they are as lean as a
//! server that speaks the protocol can be, so that what the bench measures is mostly ours.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The name of the stand-ins' thread, as `/proc` shows it.
pub const THREAD_NAME: &str = "bench-sinks";

/// What the sinks accepted.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: AtomicU64,
    pub first: OnceLock<Instant>,
}

impl Tally {
    /// Counts one accepted message; returns its number (from 0).
    fn accept(&self) -> u64 {
        self.first.get_or_init(Instant::now);
        self.accepted.fetch_add(1, Ordering::Relaxed)
    }

    pub fn count(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Where the stand-ins listen.
#[derive(Debug, Clone)]
pub struct Sinks {
    /// Base URL of the FCM and Twilio stand-in.
    pub http_url: String,
    /// Port of the SMTP sink on 127.0.0.1.
    pub smtp_port: u16,
}

/// Starts both stand-ins on a thread and runtime of their own; they serve until the process
/// ends.
pub fn start(tally: Arc<Tally>) -> io::Result<Sinks> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let served = runtime.map(|runtime| {
                runtime.block_on(async move {
                    match listen().await {
                        Ok((sinks, http, smtp)) => {
                            let _ = tx.send(Ok(sinks));
                            tokio::join!(
                                serve(http, tally.clone(), http_session),
                                serve(smtp, tally, smtp_session)
                            );
                        }
                        Err(e) => drop(tx.send(Err(e))),
                    }
                })
            });
            if let Err(e) = served {
                eprintln!("the stand-ins have no runtime: {e}");
            }
        })?;
    rx.recv()
        .map_err(|_| io::Error::other("the stand-ins' thread ended before it listened"))?
}

async fn listen() -> io::Result<(Sinks, TcpListener, TcpListener)> {
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let smtp = TcpListener::bind("127.0.0.1:0").await?;
    let sinks = Sinks {
        http_url: format!("http://{}", http.local_addr()?),
        smtp_port: smtp.local_addr()?.port(),
    };
    Ok((sinks, http, smtp))
}

/// Accepts connections and runs `session` on each until the listener fails.
async fn serve<F>(listener: TcpListener, tally: Arc<Tally>, session: fn(TcpStream, Arc<Tally>) -> F)
where
    F: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        // Without this, Nagle's algorithm and delayed ACKs hold each reply ~40 ms.
        let _ = stream.set_nodelay(true);
        tokio::spawn(session(stream, tally.clone()));
    }
}

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";

/// What a stand-in accepts.
#[derive(Clone, Copy)]
enum Accepted {
    Push,
    Sms,
}

impl Accepted {
    /// FCM's `messages:send` and Twilio's `Messages.json`, by the request's path.
    fn of(path: &[u8]) -> Option<Self> {
        let has = |part: &[u8]| path.windows(part.len()).any(|w| w == part);
        if path.starts_with(b"/v1/projects/") && has(b"/messages:send") {
            Some(Self::Push)
        } else if path.starts_with(b"/2010-04-01/Accounts/") && has(b"/Messages.json") {
            Some(Self::Sms)
        } else {
            None
        }
    }

    /// The provider's answer for message number `n` (status, JSON body), with an id of its
    /// own as FCM and Twilio give (random-looking, so the daemon's writes of them cost what
    /// real ones do).
    fn answer(self, n: u64) -> (u16, String) {
        let (a, b) = (mix(n), mix(!n));
        match self {
            Self::Push => (
                200,
                format!(r#"{{"name":"projects/bench/messages/0:{a:016x}"}}"#),
            ),
            Self::Sms => (
                201,
                format!(r#"{{"sid":"SM{a:016x}{b:016x}","status":"queued"}}"#),
            ),
        }
    }
}

/// splitmix64's finaliser: distinct inputs give distinct, well-spread outputs.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One connection: HTTP/2 if it opens with the HTTP/2 preface (h2c by prior knowledge, as
/// the daemon speaks it with `http2_connections`), else keep-alive HTTP/1.1.
async fn http_session(stream: TcpStream, tally: Arc<Tally>) -> io::Result<()> {
    let mut preface = [0u8; 3];
    if stream.peek(&mut preface).await? == 3 && &preface == b"PRI" {
        h2_session(stream, tally).await
    } else {
        h1_session(stream, tally).await
    }
}

/// HTTP/1.1, bodies framed by `Content-Length`, which both channels send; a chunked request
/// ends the connection. Anything but the two providers' paths is 404.
async fn h1_session(mut stream: TcpStream, tally: Arc<Tally>) -> io::Result<()> {
    use std::io::Write as _;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(256);
    loop {
        let (head, total) = loop {
            if let Some(framed) = frame(&buf)? {
                if buf.len() >= framed.1 {
                    break framed;
                }
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        // "POST <path> HTTP/1.1"
        let path = buf[..head].split(|&b| b == b' ').nth(1).unwrap_or_default();
        let accepted = Accepted::of(path);
        buf.drain(..total);
        match accepted {
            Some(what) => {
                let (status, body) = what.answer(tally.accept());
                let reason = if status == 200 { "OK" } else { "Created" };
                out.clear();
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(&out).await?;
            }
            None => stream.write_all(NOT_FOUND).await?,
        }
    }
}

/// HTTP/2 (the `h2` crate, which reqwest speaks it with): every request a stream, answered
/// on a task of its own so the connection keeps reading the others.
async fn h2_session(stream: TcpStream, tally: Arc<Tally>) -> io::Result<()> {
    let mut connection = h2::server::Builder::new()
        // As many streams as the daemon may have in flight, and windows that never make a
        // burst of small requests wait for a WINDOW_UPDATE.
        .max_concurrent_streams(4096)
        .initial_connection_window_size(8 << 20)
        .initial_window_size(1 << 20)
        .handshake::<_, bytes::Bytes>(stream)
        .await
        .map_err(io::Error::other)?;
    while let Some(request) = connection.accept().await {
        let (request, respond) = request.map_err(io::Error::other)?;
        tokio::spawn(h2_answer(request, respond, tally.clone()));
    }
    Ok(())
}

async fn h2_answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    tally: Arc<Tally>,
) {
    let accepted = Accepted::of(request.uri().path().as_bytes());
    let mut body = request.into_body();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let (status, body) = match accepted {
        Some(what) => what.answer(tally.accept()),
        None => (404, String::new()),
    };
    let head = http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(());
    let Ok(head) = head else { return };
    if let Ok(mut stream) = respond.send_response(head, body.is_empty()) {
        if !body.is_empty() {
            let _ = stream.send_data(bytes::Bytes::from(body), true);
        }
    }
}

/// `Some((length of the head, length of the whole request))` once the head is buffered.
fn frame(buf: &[u8]) -> io::Result<Option<(usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = end + 4;
    let mut length = 0;
    for line in buf[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(io::Error::other("chunked requests are not served"));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::other("bad content-length"))?;
        }
    }
    Ok(Some((head, head + length)))
}

/// An SMTP session that accepts every message.
async fn smtp_session(stream: TcpStream, tally: Arc<Tally>) -> io::Result<()> {
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

/// CPU time (user and system) of this process so far, split by thread: the stand-ins', the
/// SQLite connections' (sqlx runs each on a thread of its own), the delivery worker's (the
/// thread that bounds a fan-out, docs/ARCHITECTURE.md) and the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub total: f64,
    pub sinks: f64,
    pub sqlite: f64,
    pub delivery: f64,
}

impl CpuSplit {
    /// Reads `/proc/self`; zeros where it cannot.
    pub fn now() -> Self {
        let ticks = clock_ticks();
        let secs = |stat: &str| {
            // Fields after the command name, which is in parentheses and may hold spaces:
            // utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut fields = rest.split_whitespace().skip(11);
            let user: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let system: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (user + system) / ticks
        };
        let mut split = CpuSplit {
            total: std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| secs(&s)),
            ..Self::default()
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return split;
        };
        for task in tasks.flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
                continue;
            };
            if comm.trim() == THREAD_NAME {
                split.sinks += secs(&stat);
            } else if comm.starts_with("sqlx-sqlite") {
                split.sqlite += secs(&stat);
            } else if comm.trim() == crate::app::DELIVERY_THREAD {
                split.delivery += secs(&stat);
            }
        }
        split
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            total: self.total - earlier.total,
            sinks: self.sinks - earlier.sinks,
            sqlite: self.sqlite - earlier.sqlite,
            delivery: self.delivery - earlier.delivery,
        }
    }
}

/// Bytes written so far: by this process to storage (`/proc/self/io`, `write_bytes`: SQLite's
/// WAL and database pages, the log channel) and, on PostgreSQL, by the server to its WAL.
/// Unlike time, these do not drift with a noisy machine, so they compare two builds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub process: u64,
    pub wal: Option<i64>,
}

impl Written {
    /// Reads both counters; zero (or `None`) where one cannot be read.
    pub async fn now(store: &crate::store::Store) -> Self {
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let process = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let wal = store.wal_position().await.ok().flatten();
        Self { process, wal }
    }

    /// Megabytes written between `earlier` and `self`: (process, PostgreSQL WAL).
    pub fn since_mb(self, earlier: Self) -> (f64, Option<f64>) {
        let mb = |b: f64| b / 1_048_576.0;
        let process = mb(self.process.saturating_sub(earlier.process) as f64);
        let wal = self
            .wal
            .zip(earlier.wal)
            .map(|(now, then)| mb((now - then) as f64));
        (process, wal)
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
