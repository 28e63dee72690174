//! The Unix socket connector (`unix:/path/to.sock`): telemetry to a process on this
//! machine that owns the socket, as the Python SDK's `cs.run(connector=…)` does.
//!
//! The wire is JSON lines both ways, `{"topic": "…", "payload": {…}}`: each published
//! message is one line out (the payload the same JSON object a broker would carry), and
//! each line read is delivered to the subscriptions whose filter matches its topic (control
//! commands). There is no broker in between, so a subscription needs no confirmation and
//! a topic is any text.
//!
//! Like the broker connectors it keeps itself connected: a session that ends (the peer
//! closed, a write failed) is followed by a new attempt after the shared capped backoff,
//! until [`Connector::disconnect`]. Publishing hands the line to a bounded queue read by
//! the session's writer; while there is no session it fails at once.

use crate::connector::{BoxFuture, BrokerUrl, Connector, Handler, Message, Qos, Settings};
use crate::error::ConnectError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A line read from the socket longer than this is skipped (a control command is small).
const MAX_LINE: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the connector's sessions share with it.
#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    /// The current session's queue of lines to write; `None` between sessions.
    outbox: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    subscriptions: Mutex<Vec<(String, Handler)>>,
}

/// A [`Connector`] to a Unix socket.
pub struct UnixConnector {
    url: BrokerUrl,
    settings: Settings,
    shared: Arc<Shared>,
    /// Stops the session loop; `Some` once [`Connector::connect`] started it.
    running: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

impl std::fmt::Debug for UnixConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixConnector")
            .field("url", &self.url)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl UnixConnector {
    /// Not connected yet: see [`Connector::connect`]. The socket's path is `url.host`.
    pub fn new(url: BrokerUrl, settings: Settings) -> Self {
        Self {
            url,
            settings,
            shared: Arc::default(),
            running: Mutex::new(None),
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(&self.url.host)
    }
}

/// One published message as its line: `{"topic": …, "payload": …}` and a newline. A
/// payload that is one line of JSON goes in as it is; anything else as a JSON string.
pub fn line(topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic = serde_json::Value::from(topic).to_string();
    let is_json = !payload.contains(&b'\n')
        && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    let mut line = Vec::with_capacity(payload.len() + topic.len() + 24);
    line.extend_from_slice(b"{\"topic\":");
    line.extend_from_slice(topic.as_bytes());
    line.extend_from_slice(b",\"payload\":");
    if is_json {
        line.extend_from_slice(payload);
    } else {
        let text = serde_json::Value::from(String::from_utf8_lossy(payload)).to_string();
        line.extend_from_slice(text.as_bytes());
    }
    line.extend_from_slice(b"}\n");
    line
}

/// A line read from the socket as a message: `{"topic": "…", "payload": …}`, the payload
/// re-encoded as JSON bytes.
fn message(line: &[u8]) -> Option<Message> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let topic = value.get("topic")?.as_str()?.to_owned();
    let payload = serde_json::to_vec(value.get("payload")?).ok()?;
    Some(Message { topic, payload })
}

/// Sessions, one after the other, until `stop`; `first` hears how the first attempt went.
async fn sessions(
    path: PathBuf,
    settings: Settings,
    shared: Arc<Shared>,
    stop: CancellationToken,
    mut first: Option<oneshot::Sender<Result<(), ConnectError>>>,
) {
    let mut failures = 0u32;
    loop {
        let attempt = tokio::time::timeout(settings.connect_timeout, UnixStream::connect(&path));
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(Ok(stream)) => {
                failures = 0;
                let (tx, rx) = mpsc::channel(settings.queue.max(1));
                *lock(&shared.outbox) = Some(tx);
                // Marked connected before the caller hears of it.
                shared.connected.store(true, Ordering::Release);
                match first.take() {
                    Some(first) => {
                        let _ = first.send(Ok(()));
                    }
                    None => {
                        tracing::info!(socket = %path.display(), "telemetry socket connected again");
                    }
                }
                session(stream, rx, &settings, &shared, &stop).await;
                shared.connected.store(false, Ordering::Release);
                lock(&shared.outbox).take();
                if stop.is_cancelled() {
                    return;
                }
            }
            Ok(Err(error)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(ConnectError::Unreachable {
                        url: format!("unix:{}", path.display()),
                        reason: error.to_string(),
                    }));
                }
            }
            Err(_) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(ConnectError::Timeout {
                        what: "the telemetry socket to accept",
                        ms: settings.connect_timeout.as_millis(),
                    }));
                }
            }
        }
        failures = failures.saturating_add(1);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settings.backoff(failures)) => {}
        }
    }
}

/// One connection: lines out from `outbox`, lines in to the subscriptions, until either
/// side ends or `stop` (then what is queued is written first, for at most `ack_timeout`).
async fn session(
    stream: UnixStream,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    settings: &Settings,
    shared: &Shared,
    stop: &CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let reader = async {
        let mut lines = BufReader::new(read);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            if !matches!(read_line(&mut lines, &mut buffer).await, Ok(true)) {
                // The peer writes no more; it may still read: only a failed write ends
                // the session.
                return std::future::pending().await;
            }
            let Some(message) = message(&buffer) else {
                tracing::warn!(
                    "telemetry socket: a line that is not {{\"topic\", \"payload\"}} JSON was ignored"
                );
                continue;
            };
            let handlers: Vec<Handler> = lock(&shared.subscriptions)
                .iter()
                .filter(|(filter, _)| crate::topic::matches(filter, &message.topic))
                .map(|(_, handler)| Arc::clone(handler))
                .collect();
            for handler in handlers {
                handler(message.clone());
            }
        }
    };
    let writer = async {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => break,
                next = outbox.recv() => next,
            };
            let Some(line) = next else { return };
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
        // Stopping: what was queued goes out, briefly.
        let _ = tokio::time::timeout(settings.ack_timeout, async {
            outbox.close();
            while let Some(line) = outbox.recv().await {
                if write.write_all(&line).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        })
        .await;
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}

/// Reads one line into `buffer`, without its newline; `false` at the end of the stream.
/// A line over [`MAX_LINE`] is read to its end and left out (`buffer` empty: no message).
async fn read_line(
    lines: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    buffer: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut too_long = false;
    loop {
        let available = lines.fill_buf().await?;
        if available.is_empty() {
            return Ok(false);
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        if too_long || buffer.len() + chunk.len() > MAX_LINE {
            too_long = true;
            buffer.clear();
        } else {
            buffer.extend_from_slice(chunk);
        }
        let used = newline.map_or(available.len(), |i| i + 1);
        lines.consume(used);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

impl Connector for UnixConnector {
    fn url(&self) -> &BrokerUrl {
        &self.url
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            let first = {
                let mut running = lock(&self.running);
                if running.is_some() {
                    None
                } else {
                    let (tx, rx) = oneshot::channel();
                    let stop = CancellationToken::new();
                    let task = tokio::spawn(sessions(
                        self.path(),
                        self.settings.clone(),
                        Arc::clone(&self.shared),
                        stop.clone(),
                        Some(tx),
                    ));
                    *running = Some((stop, task));
                    Some(rx)
                }
            };
            match first {
                Some(rx) => rx.await.unwrap_or(Err(ConnectError::NotConnected {
                    url: self.url.to_string(),
                })),
                None if self.is_connected() => Ok(()),
                None => Err(ConnectError::NotConnected {
                    url: self.url.to_string(),
                }),
            }
        })
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            let Some((stop, task)) = lock(&self.running).take() else {
                return Ok(());
            };
            stop.cancel();
            let _ = task.await;
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: Vec<u8>,
        _qos: Qos,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move {
            self.settings.check_payload(&payload)?;
            let not_connected = || ConnectError::NotConnected {
                url: self.url.to_string(),
            };
            let outbox = lock(&self.shared.outbox)
                .clone()
                .ok_or_else(not_connected)?;
            outbox
                .send(line(topic, &payload))
                .await
                .map_err(|_| not_connected())
        })
    }

    fn subscribe<'a>(
        &'a self,
        filter: &'a str,
        handler: Handler,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move {
            lock(&self.shared.subscriptions).push((filter.to_owned(), handler));
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }
}

impl Drop for UnixConnector {
    fn drop(&mut self) {
        if let Some((stop, task)) = lock(&self.running).take() {
            stop.cancel();
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_payload_goes_in_as_it_is_anything_else_as_a_string() {
        assert_eq!(
            String::from_utf8(line("a/b", br#"{"x":1}"#)).unwrap(),
            "{\"topic\":\"a/b\",\"payload\":{\"x\":1}}\n"
        );
        assert_eq!(
            String::from_utf8(line("a\"b", b"not json\n")).unwrap(),
            "{\"topic\":\"a\\\"b\",\"payload\":\"not json\\n\"}\n"
        );
        assert_eq!(
            String::from_utf8(line("t", b"{\"x\":\n1}")).unwrap(),
            "{\"topic\":\"t\",\"payload\":\"{\\\"x\\\":\\n1}\"}\n"
        );
    }

    #[test]
    fn a_line_read_is_a_message_with_its_payload_as_json() {
        let m =
            message(br#"{"topic": "cascade/control/o/p/pause", "payload": {"command": "pause"}}"#)
                .unwrap();
        assert_eq!(m.topic, "cascade/control/o/p/pause");
        assert_eq!(m.payload, br#"{"command":"pause"}"#);
        assert!(message(b"{\"payload\": {}}").is_none());
        assert!(message(b"[1]").is_none());
        assert!(message(b"").is_none());
    }
}
