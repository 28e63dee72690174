//! The MQTT connector (rumqttc, MQTT 3.1.1, plain TCP).
//!
//! rumqttc splits a connection into a client (a bounded request queue) and an event loop
//! that must be polled for anything to happen. The loop runs on a task this connector
//! owns: it dispatches incoming messages to the subscription handlers, and on a
//! connection error it waits (capped exponential backoff) and polls again, which
//! reconnects. Sessions are clean, so after every reconnect the loop subscribes again to
//! every filter.
//!
//! `publish` fails at once when the connection is down, so a dead broker cannot hold up a
//! caller; while connected it waits for room in a bounded queue, a wait the caller bounds
//! (telemetry gives up after its publish timeout).
//!
//! Quality of service 0 publishes (telemetry's) do not go through rumqttc's request queue:
//! its event loop writes and flushes each request on its own, one `writev` per message,
//! and the loopback delivery to the broker (and the broker's wake-up) runs inside each of
//! them. They go to an outbox of this connector instead; the loop task takes everything
//! waiting there at once, encodes it into the connection's write buffer with rumqttc's
//! codec, and flushes once: one write for a batch, in the order published. A DISCONNECT
//! goes through the same outbox, behind what was published before it. Quality of service
//! 1 keeps rumqttc's queue, which tracks packet ids and acknowledgements, so order is
//! kept among the messages of one quality of service.

use crate::connector::{BoxFuture, BrokerUrl, Connector, Handler, Message, Qos, Settings};
use crate::error::ConnectError;
use crate::topic::matches;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How the connection is doing, watched by `connect` and `subscribe`.
#[derive(Debug, Clone, Default)]
struct Link {
    /// Connection attempts that ended, successfully or not.
    attempts: u64,
    /// Successful connections so far; subscriptions are counted per connection.
    epoch: u64,
    connected: bool,
    /// SUBACKs received on this connection.
    subacks: u64,
    last_error: Option<String>,
}

struct Subscription {
    filter: String,
    handler: Handler,
}

/// The subscriptions, and how many SUBSCRIBEs went out on this connection. Kept under one
/// lock with the sending, so that the n-th SUBSCRIBE sent is the n-th SUBACK received.
#[derive(Default)]
struct Subscriptions {
    list: Vec<Subscription>,
    sent: u64,
}

struct Shared {
    url: String,
    connected: AtomicBool,
    link: watch::Sender<Link>,
    subscriptions: Mutex<Subscriptions>,
}

impl Shared {
    fn subscriptions(&self) -> MutexGuard<'_, Subscriptions> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn on_connected(&self, client: &AsyncClient) {
        let mut subs = self.subscriptions();
        let mut sent = 0;
        for s in &subs.list {
            // The queue is fresh after a reconnect; if it is full anyway, the subscription
            // comes back on the next reconnect.
            match client.try_subscribe(s.filter.clone(), QoS::AtLeastOnce) {
                Ok(()) => sent += 1,
                Err(error) => tracing::warn!(filter = %s.filter, %error, "cannot resubscribe"),
            }
        }
        subs.sent = sent;
        self.connected.store(true, Ordering::Release);
        self.link.send_modify(|l| {
            l.attempts += 1;
            l.epoch += 1;
            l.connected = true;
            l.subacks = 0;
            l.last_error = None;
        });
    }

    fn on_disconnected(&self, error: Option<String>) {
        self.connected.store(false, Ordering::Release);
        self.link.send_modify(|l| {
            if error.is_some() && !l.connected {
                l.attempts += 1;
            }
            l.connected = false;
            if error.is_some() {
                l.last_error = error;
            }
        });
    }

    fn dispatch(&self, topic: &str, payload: &[u8]) {
        let handlers: Vec<Handler> = self
            .subscriptions()
            .list
            .iter()
            .filter(|s| matches(&s.filter, topic))
            .map(|s| Arc::clone(&s.handler))
            .collect();
        for handler in handlers {
            handler(Message {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            });
        }
    }
}

/// What the event loop task takes from the outbox.
enum Outbound {
    /// A quality of service 0 PUBLISH, written as it is.
    Publish(Publish),
    /// Close the connection once everything before it is written.
    Disconnect,
}

/// Outbox entries written (and flushed) together at most.
const OUTBOX_BATCH: usize = 256;

/// The running connection: the client, the outbox, and the event loop task (cancelled on
/// drop).
struct Running {
    client: AsyncClient,
    outbox: mpsc::Sender<Outbound>,
    task: JoinHandle<()>,
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// A [`Connector`] to an MQTT broker.
pub struct MqttConnector {
    url: BrokerUrl,
    settings: Settings,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for MqttConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConnector")
            .field("url", &self.url)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl MqttConnector {
    /// Not connected yet: see [`Connector::connect`].
    pub fn new(url: BrokerUrl, settings: Settings) -> Self {
        let (link, _) = watch::channel(Link::default());
        Self {
            shared: Arc::new(Shared {
                url: url.to_string(),
                connected: AtomicBool::new(false),
                link,
                subscriptions: Mutex::default(),
            }),
            url,
            settings,
            running: Mutex::new(None),
        }
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self) -> Option<AsyncClient> {
        self.running().as_ref().map(|r| r.client.clone())
    }

    fn outbox(&self) -> Option<mpsc::Sender<Outbound>> {
        self.running().as_ref().map(|r| r.outbox.clone())
    }

    /// The largest packet the codec writes: a bigger one would fail the connection.
    fn max_packet(&self) -> usize {
        self.settings.max_payload + 1024
    }

    /// Starts the event loop task unless it runs.
    fn start(&self) {
        let mut running = self.running();
        if running.is_some() {
            return;
        }
        let mut options = MqttOptions::new(client_id(), &self.url.host, self.url.port);
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            .set_max_packet_size(self.max_packet(), self.max_packet());
        let (client, mut events) = AsyncClient::new(options, self.settings.queue.max(1));
        let (outbox, outgoing) = mpsc::channel(self.settings.queue.max(1));
        let mut network = events.network_options();
        // rumqttc counts whole seconds: round up, at least one.
        let timeout = self.settings.connect_timeout;
        network.set_connection_timeout(
            (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1),
        );
        events.set_network_options(network);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(drive(
            events,
            outgoing,
            client.clone(),
            Arc::clone(&self.shared),
            self.settings.clone(),
            cancel.clone(),
        ));
        *running = Some(Running {
            client,
            outbox,
            task,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        });
    }
}

/// A client id unique to this connector: brokers drop the older of two equal ids.
fn client_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("cascade-{}-{n}-{nanos:x}", std::process::id())
}

/// What woke the event loop task.
enum Step {
    /// Entries taken from the outbox (0: every sender is gone).
    Outbox(usize),
    Polled(Result<Event, ConnectionError>),
}

/// The event loop: polls, writes the outbox, dispatches, reconnects with backoff until
/// cancelled or disconnected on purpose.
async fn drive(
    mut events: EventLoop,
    mut outbox: mpsc::Receiver<Outbound>,
    client: AsyncClient,
    shared: Arc<Shared>,
    settings: Settings,
    cancel: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut batch = Vec::with_capacity(OUTBOX_BATCH);
    // As long as rumqttc gives a flush (whole seconds, at least one).
    let write_timeout = Duration::from_secs(events.network_options().connection_timeout().max(1));
    loop {
        // The connection first (incoming packets, pings, reconnecting), so a busy outbox
        // cannot starve it. Dropping `poll` at an await when the outbox wins is safe: its
        // reads are buffered by the codec, what it wrote stays in the write buffer (the
        // next flush sends it, in order), and writing only waits when that buffer is over
        // 8 KiB, which it is not between flushes.
        let step = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            polled = events.poll() => Step::Polled(polled),
            taken = outbox.recv_many(&mut batch, OUTBOX_BATCH) => Step::Outbox(taken),
        };
        let polled = match step {
            Step::Outbox(0) => break,
            Step::Outbox(_) => {
                let written = tokio::select! {
                    () = cancel.cancelled() => break,
                    written = tokio::time::timeout(write_timeout, write_out(&mut events, &mut batch)) => {
                        written.unwrap_or(Err(ConnectionError::FlushTimeout))
                    }
                };
                match written {
                    Ok(Written::Published) => continue,
                    Ok(Written::Closed) => break,
                    Ok(Written::Disconnect) => {
                        if client.try_disconnect().is_err() {
                            break;
                        }
                        continue;
                    }
                    Err(error) => {
                        // As rumqttc does with an error of its own: drop the connection,
                        // the next poll reconnects.
                        events.clean();
                        Err(error)
                    }
                }
            }
            Step::Polled(polled) => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                shared.on_connected(&client);
                tracing::debug!(broker = %shared.url, "mqtt connected");
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => shared.link.send_modify(|l| l.subacks += 1),
            Ok(Event::Incoming(Packet::Publish(p))) => shared.dispatch(&p.topic, &p.payload),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(error) => {
                shared.on_disconnected(Some(error.to_string()));
                failures = failures.saturating_add(1);
                let delay = settings.backoff(failures);
                tracing::debug!(broker = %shared.url, %error, ?delay, "mqtt connection lost");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    shared.on_disconnected(None);
}

/// What a batch from the outbox asked for.
enum Written {
    Published,
    /// A disconnect, after the publishes before it were written.
    Disconnect,
    /// A disconnect without a connection: nothing to say goodbye to.
    Closed,
}

/// Encodes a batch from the outbox into the connection's write buffer and flushes it: one
/// write for all of it. Without a connection the publishes are dropped (the session is
/// clean, so rumqttc would drop its queued ones too).
async fn write_out(
    events: &mut EventLoop,
    batch: &mut Vec<Outbound>,
) -> Result<Written, ConnectionError> {
    let mut outcome = Written::Published;
    let Some(network) = events.network.as_mut() else {
        if batch.iter().any(|o| matches!(o, Outbound::Disconnect)) {
            outcome = Written::Closed;
        }
        batch.clear();
        return Ok(outcome);
    };
    for outbound in batch.drain(..) {
        match outbound {
            Outbound::Publish(publish) => network.write(Packet::Publish(publish)).await?,
            // Nothing is published after a disconnect: the rest is dropped.
            Outbound::Disconnect => {
                outcome = Written::Disconnect;
                break;
            }
        }
    }
    network.flush().await?;
    Ok(outcome)
}

/// Waits until `done` holds for the link, at most `timeout`.
async fn wait_link(
    shared: &Shared,
    timeout: Duration,
    what: &'static str,
    done: impl Fn(&Link) -> bool,
) -> Result<Link, ConnectError> {
    let mut rx = shared.link.subscribe();
    let waited = tokio::time::timeout(timeout, async {
        // The sender lives in `shared`, so `wait_for` only ends when `done` holds.
        rx.wait_for(|l| done(l)).await.map(|l| l.clone()).ok()
    })
    .await;
    match waited {
        Ok(Some(link)) => Ok(link),
        _ => Err(ConnectError::Timeout {
            what,
            ms: timeout.as_millis(),
        }),
    }
}

impl Connector for MqttConnector {
    fn url(&self) -> &BrokerUrl {
        &self.url
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            let before = self.shared.link.borrow().attempts;
            self.start();
            // One attempt takes at most the connect timeout (whole seconds, at least 1).
            let limit = self.settings.connect_timeout + Duration::from_secs(2);
            let link = wait_link(&self.shared, limit, "the mqtt connection", |l| {
                l.connected || l.attempts > before
            })
            .await?;
            if link.connected {
                Ok(())
            } else {
                Err(ConnectError::Unreachable {
                    url: self.shared.url.clone(),
                    reason: link.last_error.unwrap_or_default(),
                })
            }
        })
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            let Some(mut running) = self.running().take() else {
                return Ok(());
            };
            // DISCONNECT goes behind what is queued, so queued messages are sent first.
            let graceful =
                self.is_connected() && running.outbox.try_send(Outbound::Disconnect).is_ok();
            if graceful
                && tokio::time::timeout(self.settings.ack_timeout, &mut running.task)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            running.cancel.cancel();
            let _ = (&mut running.task).await;
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: Vec<u8>,
        qos: Qos,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move {
            self.settings.check_payload(&payload)?;
            let not_connected = || ConnectError::NotConnected {
                url: self.shared.url.clone(),
            };
            if !self.is_connected() {
                return Err(not_connected());
            }
            if qos == Qos::AtMostOnce {
                if !rumqttc::valid_topic(topic) {
                    return Err(ConnectError::MqttTopic {
                        topic: topic.to_owned(),
                    });
                }
                let publish = Publish::new(topic, QoS::AtMostOnce, payload);
                // The codec refuses a bigger packet by failing the connection.
                let size = publish.size();
                if size > self.max_packet() {
                    return Err(ConnectError::PayloadTooLarge {
                        size,
                        limit: self.max_packet(),
                    });
                }
                let outbox = self.outbox().ok_or_else(not_connected)?;
                // Waits for room while connected: the caller bounds the wait (telemetry's
                // publish timeout); the event loop task empties the outbox even while
                // the connection is down.
                return outbox
                    .send(Outbound::Publish(publish))
                    .await
                    .map_err(|_| not_connected());
            }
            let client = self.client().ok_or_else(not_connected)?;
            // Waits for room in the client's queue while connected, as above; a lost
            // connection frees the queue.
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|source| ConnectError::Mqtt {
                    url: self.shared.url.clone(),
                    source,
                })
        })
    }

    fn subscribe<'a>(
        &'a self,
        filter: &'a str,
        handler: Handler,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move {
            let client = self.client();
            let target = {
                let mut subs = self.shared.subscriptions();
                let link = self.shared.link.borrow().clone();
                let target = match &client {
                    Some(client) if link.connected => {
                        client
                            .try_subscribe(filter, QoS::AtLeastOnce)
                            .map_err(|source| ConnectError::Mqtt {
                                url: self.shared.url.clone(),
                                source,
                            })?;
                        subs.sent += 1;
                        Some((link.epoch, subs.sent))
                    }
                    _ => None,
                };
                subs.list.push(Subscription {
                    filter: filter.to_owned(),
                    handler,
                });
                target
            };
            if let Some((epoch, n)) = target {
                // A reconnect in between resubscribes everything: done as well.
                wait_link(
                    &self.shared,
                    self.settings.ack_timeout,
                    "a subscription",
                    |l| l.epoch != epoch || l.subacks >= n,
                )
                .await?;
            }
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_differ() {
        assert_ne!(client_id(), client_id());
    }

    #[tokio::test]
    async fn publishing_before_connecting_fails_at_once() {
        let url = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
        let c = MqttConnector::new(url, Settings::default());
        let err = c
            .publish("a/b", b"x".to_vec(), Qos::AtMostOnce)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "not connected to mqtt://127.0.0.1:9");
        let big = vec![0; Settings::default().max_payload + 1];
        assert!(matches!(
            c.publish("a/b", big, Qos::AtMostOnce).await,
            Err(ConnectError::PayloadTooLarge { .. })
        ));
    }
}
