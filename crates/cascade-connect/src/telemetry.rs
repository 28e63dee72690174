//! The telemetry publisher: engine [`Event`]s in, [`Payload`](crate::payload::Payload)s out on
//! `cascade/telemetry/{org}/{project}/{run_id}/events`, without ever slowing a run.
//!
//! [`Telemetry::record`] is synchronous and never waits: it maps the event and offers it
//! to a bounded channel; when the channel is full the event is dropped and counted. A
//! background task drains the channel in order (in batches, at most one wake-up per
//! 4 ms when idle), masks every string, serialises and publishes. While the
//! connector is down it drops each event without encoding it; a publish that fails or
//! takes longer than `publish_timeout` (broker slow or gone) is dropped and counted too.
//! So a dead broker costs a run one `try_send` per event, and nothing in the run waits on
//! the network.
//!
//! Mapping ([`map`]):
//!
//! | engine event | body |
//! |---|---|
//! | `RunStarted` / `RunFinished` | `LifecycleEvent` `ENGINE_STARTED` / `ENGINE_STOPPED` |
//! | `TaskPending` | `TaskStateEvent` `PENDING` (fan-out label in `metadata.label`) |
//! | `TaskStarted` | `RUNNING` (`metadata.attempt`) |
//! | `TaskRetrying` | `PENDING` again (next `attempt`, `exit_code`, `retry_delay_ms`) |
//! | `TaskFinished` | `COMPLETED`, `FAILED`, or `SKIPPED`; `Cancelled` → `FAILED` with error `cancelled` unless the engine gave one |
//! | `TaskSkipped` | `SKIPPED` (the reason is not sent) |
//! | `ResourceAcquired` / `ResourceReleased` | `ResourceEvent` `ACQUIRE` / `RELEASE` |
//! | `TaskLog` | not published: logs stay in the store and on the terminal |
//!
//! The engine implements its `Subscriber` for this in the binary (this crate does not
//! depend on the engine): `fn on_event(&self, e: &Event) { self.telemetry.record(e) }`.

use crate::connector::{Connector, Qos};
use crate::error::ConnectError;
use crate::payload::{
    Body, Lifecycle, LifecycleEvent, ResourceAction, ResourceEvent, TaskMetadata, TaskStateEvent,
    TelemetryState, VERSION,
};
use crate::topic::Identity;
use cascade_plan::{Event, EventKind, RunId, TaskId};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Masks secrets in a string (the engine's masker): applied to every string value of
/// every payload before it is serialised.
pub type Masker = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How the publisher behaves; [`TelemetryOptions::default`] for the usual.
#[derive(Clone)]
pub struct TelemetryOptions {
    /// Events waiting to be published; more are dropped (and counted).
    pub capacity: usize,
    pub qos: Qos,
    /// Applied to every string in every payload, defensively: the engine masks event text
    /// already.
    pub masker: Option<Masker>,
    /// A publish that takes longer is given up (and counted as dropped).
    pub publish_timeout: Duration,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            capacity: 4096,
            qos: Qos::AtMostOnce,
            masker: None,
            publish_timeout: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for TelemetryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryOptions")
            .field("capacity", &self.capacity)
            .field("qos", &self.qos)
            .field("masker", &self.masker.is_some())
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

/// An event on its way to the broker: mapped, not yet masked or serialised.
#[derive(Debug)]
struct Pending {
    run_id: RunId,
    ts: jiff::Timestamp,
    body: Body,
}

#[derive(Debug)]
enum Command {
    Publish(Box<Pending>),
    /// Answered once everything before it was published or dropped.
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
}

/// Publishes a run's events; see the module doc. Create it inside a tokio runtime (it
/// spawns its publishing task there); dropping it stops that task.
#[derive(Debug)]
pub struct Telemetry {
    tx: mpsc::Sender<Command>,
    /// Cuts the publishing task's gathering pause short (a flush is waiting).
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Telemetry {
    /// A publisher holding up to `capacity` unsent events, with default options otherwise.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(connector: Arc<dyn Connector>, identity: Identity, capacity: usize) -> Self {
        Self::with_options(
            connector,
            identity,
            TelemetryOptions {
                capacity,
                ..TelemetryOptions::default()
            },
        )
    }

    /// A publisher with explicit options (masker, quality of service, timeouts).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn with_options(
        connector: Arc<dyn Connector>,
        identity: Identity,
        options: TelemetryOptions,
    ) -> Self {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(drain(
            rx,
            Arc::clone(&wake),
            connector,
            identity,
            options,
            Arc::clone(&counters),
        ));
        Self {
            tx,
            wake,
            counters,
            task,
        }
    }

    /// Offers `event` for publishing and returns at once: never waits, never fails. Log
    /// lines are not published; an event that finds the queue full is dropped and counted.
    pub fn record(&self, event: &Event) {
        let Some(body) = map(&event.kind) else {
            return;
        };
        let pending = Box::new(Pending {
            run_id: event.run_id.clone(),
            ts: event.ts,
            body,
        });
        if self.tx.try_send(Command::Publish(pending)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most `timeout`) until every event recorded so far was published or
    /// dropped. For the end of a run, before the connector's `disconnect`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), ConnectError> {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            // The task only stops when `self` is dropped, so neither can fail here.
            let _ = self.tx.send(Command::Flush(done)).await;
            // The end of a run waits for this: no gathering pause.
            self.wake.notify_one();
            let _ = wait.await;
        };
        tokio::time::timeout(timeout, flushed)
            .await
            .map_err(|_| ConnectError::Timeout {
                what: "telemetry to flush",
                ms: timeout.as_millis(),
            })
    }

    /// Events handed to the connector.
    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Events given up: queue full, broker not connected, publish failed or timed out.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Commands taken from the channel at once.
const BATCH: usize = 256;
/// Pause after a partial batch, so that events gather in the channel instead of waking
/// the task once per event (a wake-up costs more than publishing an event), and go to
/// the connector together: MQTT writes what it is handed at once in one write, NATS too,
/// so the broker also wakes once per batch. A flush cuts the pause short.
const GATHER: Duration = Duration::from_millis(4);

/// The publishing task: in order, a batch at a time.
async fn drain(
    mut rx: mpsc::Receiver<Command>,
    wake: Arc<Notify>,
    connector: Arc<dyn Connector>,
    identity: Identity,
    options: TelemetryOptions,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // The topic of the last run seen: one run per engine, so it is nearly always this.
    let mut topic: Option<(RunId, String)> = None;
    // Warn once per outage, not once per event.
    let mut failing = false;
    loop {
        let taken = rx.recv_many(&mut batch, BATCH).await;
        if taken == 0 {
            return;
        }
        for command in batch.drain(..) {
            let pending = match command {
                Command::Publish(pending) => pending,
                Command::Flush(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            let outcome = if connector.is_connected() {
                let topic = match &topic {
                    Some((run, topic)) if *run == pending.run_id => topic.clone(),
                    _ => {
                        let t = identity.telemetry_topic(&pending.run_id);
                        topic = Some((pending.run_id.clone(), t.clone()));
                        t
                    }
                };
                publish(*pending, &topic, connector.as_ref(), &identity, &options).await
            } else {
                // Not worth encoding what cannot be sent.
                Err(ConnectError::NotConnected {
                    url: connector.url().to_string(),
                })
            };
            match outcome {
                Ok(()) => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    if std::mem::take(&mut failing) {
                        tracing::info!(broker = %connector.url(), "telemetry publishing again");
                    }
                }
                Err(error) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(broker = %connector.url(), %error, "telemetry events are being dropped");
                    }
                }
            }
        }
        if taken < BATCH {
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = wake.notified() => {}
            }
        }
    }
}

async fn publish(
    pending: Pending,
    topic: &str,
    connector: &dyn Connector,
    identity: &Identity,
    options: &TelemetryOptions,
) -> Result<(), ConnectError> {
    let bytes = encode(&pending, identity, options.masker.as_ref())?;
    tokio::time::timeout(
        options.publish_timeout,
        connector.publish(topic, bytes, options.qos),
    )
    .await
    .unwrap_or(Err(ConnectError::Timeout {
        what: "a publish",
        ms: options.publish_timeout.as_millis(),
    }))
}

/// [`Payload`](crate::payload::Payload) as it is written, borrowing what every event of a run shares: the same
/// fields in the same order, so the same bytes, without copying five strings per event.
#[derive(serde::Serialize)]
struct Wire<'a> {
    header: WireHeader<'a>,
    body: &'a Body,
}

#[derive(serde::Serialize)]
struct WireHeader<'a> {
    v: &'a str,
    ts: jiff::Timestamp,
    run_id: &'a str,
    org_id: &'a str,
    project_id: &'a str,
    source: &'a str,
}

/// The payload as JSON bytes, every string value masked.
fn encode(
    pending: &Pending,
    identity: &Identity,
    masker: Option<&Masker>,
) -> Result<Vec<u8>, ConnectError> {
    let payload = Wire {
        header: WireHeader {
            v: VERSION,
            ts: pending.ts,
            run_id: pending.run_id.as_str(),
            org_id: identity.org(),
            project_id: identity.project(),
            source: identity.source(),
        },
        body: &pending.body,
    };
    let Some(mask) = masker else {
        return serde_json::to_vec(&payload).map_err(ConnectError::Serialise);
    };
    // Masking the JSON tree rather than named fields: a field added later is covered too.
    let mut tree = serde_json::to_value(&payload).map_err(ConnectError::Serialise)?;
    mask_strings(&mut tree, mask.as_ref());
    serde_json::to_vec(&tree).map_err(ConnectError::Serialise)
}

fn mask_strings(value: &mut serde_json::Value, mask: &(dyn Fn(&str) -> String + Send + Sync)) {
    match value {
        serde_json::Value::String(s) => *s = mask(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_strings(v, mask)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| mask_strings(v, mask)),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// The body for an engine event; `None` for events that are not published (`TaskLog`).
pub fn map(kind: &EventKind) -> Option<Body> {
    let task = |id: &TaskId, state, metadata, duration_ms, error| {
        Body::TaskStateEvent(TaskStateEvent {
            task_id: id.to_string(),
            task_name: id.job.to_string(),
            state,
            duration_ms,
            error,
            metadata,
        })
    };
    let resource_event = |resource: &str, action, in_use| {
        Body::ResourceEvent(ResourceEvent {
            resource_name: resource.to_owned(),
            action,
            current_usage: in_use,
        })
    };
    Some(match kind {
        EventKind::RunStarted { .. } => Body::LifecycleEvent(LifecycleEvent {
            event: Lifecycle::EngineStarted,
        }),
        EventKind::RunFinished { .. } => Body::LifecycleEvent(LifecycleEvent {
            event: Lifecycle::EngineStopped,
        }),
        EventKind::TaskPending { task: id, label } => task(
            id,
            TelemetryState::Pending,
            TaskMetadata {
                label: label.clone(),
                ..TaskMetadata::default()
            },
            None,
            None,
        ),
        EventKind::TaskStarted { task: id, attempt } => task(
            id,
            TelemetryState::Running,
            TaskMetadata {
                attempt: Some(*attempt),
                ..TaskMetadata::default()
            },
            None,
            None,
        ),
        EventKind::TaskRetrying {
            task: id,
            attempt,
            exit_code,
            delay_ms,
        } => task(
            id,
            TelemetryState::Pending,
            TaskMetadata {
                attempt: Some(*attempt),
                exit_code: *exit_code,
                retry_delay_ms: Some(*delay_ms),
                label: None,
            },
            None,
            None,
        ),
        EventKind::TaskFinished {
            task: id,
            state,
            attempt,
            exit_code,
            duration_ms,
            error,
        } => {
            let (status, error) = state.telemetry(error.as_deref());
            task(
                id,
                status,
                TaskMetadata {
                    // Attempt 0: finished without ever starting (cancelled or skipped).
                    attempt: Some(*attempt).filter(|a| *a > 0),
                    exit_code: *exit_code,
                    ..TaskMetadata::default()
                },
                Some(*duration_ms),
                error,
            )
        }
        EventKind::TaskSkipped { task: id, .. } => task(
            id,
            TelemetryState::Skipped,
            TaskMetadata::default(),
            None,
            None,
        ),
        EventKind::ResourceAcquired {
            resource, in_use, ..
        } => resource_event(resource, ResourceAction::Acquire, *in_use),
        EventKind::ResourceReleased {
            resource, in_use, ..
        } => resource_event(resource, ResourceAction::Release, *in_use),
        EventKind::TaskLog { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{BoxFuture, BrokerUrl, Handler};
    use cascade_plan::{RunOutcome, Stream, TaskState};
    use serde_json::json;
    use std::sync::Mutex;

    fn id(text: &str) -> TaskId {
        TaskId::parse(text).unwrap()
    }

    fn body(kind: &EventKind) -> serde_json::Value {
        serde_json::to_value(map(kind).unwrap()).unwrap()
    }

    #[test]
    fn runs_map_to_lifecycle_events() {
        assert_eq!(
            body(&EventKind::RunStarted {
                pipeline: "p".into(),
                jobs: 1,
                parallelism: 1
            }),
            json!({"type": "LifecycleEvent", "event": "ENGINE_STARTED"})
        );
        assert_eq!(
            body(&EventKind::RunFinished {
                outcome: RunOutcome::Failed,
                passed: 0,
                failed: 1,
                skipped: 0,
                duration_ms: 9
            }),
            json!({"type": "LifecycleEvent", "event": "ENGINE_STOPPED"})
        );
    }

    type Json = serde_json::Value;

    fn object<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn meta(attempt: Json, exit_code: Json, label: Json, delay: Json) -> Json {
        object([
            ("attempt", attempt),
            ("exit_code", exit_code),
            ("label", label),
            ("retry_delay_ms", delay),
        ])
    }

    fn state(task: &str, state: &str, duration: Json, error: Json, metadata: Json) -> Json {
        let name = task.split('[').next().unwrap();
        object([
            ("type", json!("TaskStateEvent")),
            ("task_id", json!(task)),
            ("task_name", json!(name)),
            ("state", json!(state)),
            ("duration_ms", duration),
            ("error", error),
            ("metadata", metadata),
        ])
    }

    const NULL: Json = Json::Null;

    #[test]
    fn task_transitions_map_to_task_state_events() {
        assert_eq!(
            body(&EventKind::TaskPending {
                task: id("test[2]"),
                label: Some("linux".into())
            }),
            state(
                "test[2]",
                "PENDING",
                NULL,
                NULL,
                meta(NULL, NULL, json!("linux"), NULL)
            )
        );
        assert_eq!(
            body(&EventKind::TaskStarted {
                task: id("build"),
                attempt: 1
            }),
            state(
                "build",
                "RUNNING",
                NULL,
                NULL,
                meta(json!(1), NULL, NULL, NULL)
            )
        );
        assert_eq!(
            body(&EventKind::TaskRetrying {
                task: id("build"),
                attempt: 2,
                exit_code: Some(3),
                delay_ms: 500
            }),
            state(
                "build",
                "PENDING",
                NULL,
                NULL,
                meta(json!(2), json!(3), NULL, json!(500))
            )
        );
        assert_eq!(
            body(&EventKind::TaskSkipped {
                task: id("deploy"),
                reason: "if: false".into()
            }),
            state(
                "deploy",
                "SKIPPED",
                NULL,
                NULL,
                meta(NULL, NULL, NULL, NULL)
            )
        );
    }

    #[test]
    fn final_states_map_with_cancelled_as_failed() {
        let finished = |s: TaskState, attempt: u32, error: Option<&str>| EventKind::TaskFinished {
            task: id("build"),
            state: s,
            attempt,
            exit_code: Some(1),
            duration_ms: 42,
            error: error.map(str::to_owned),
        };
        for (s, attempt, error, wire, wire_attempt, wire_error) in [
            (TaskState::Succeeded, 1, None, "COMPLETED", json!(1), NULL),
            (
                TaskState::Failed,
                2,
                Some("exit 1"),
                "FAILED",
                json!(2),
                json!("exit 1"),
            ),
            (TaskState::Skipped, 0, None, "SKIPPED", NULL, NULL),
            (
                TaskState::Cancelled,
                0,
                None,
                "FAILED",
                NULL,
                json!("cancelled"),
            ),
            (
                TaskState::Cancelled,
                1,
                Some("timed out"),
                "FAILED",
                json!(1),
                json!("timed out"),
            ),
        ] {
            assert_eq!(
                body(&finished(s, attempt, error)),
                state(
                    "build",
                    wire,
                    json!(42),
                    wire_error,
                    meta(wire_attempt, json!(1), NULL, NULL)
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn resources_map_to_resource_events_and_logs_to_nothing() {
        let r = |acquired: bool| {
            let (task, resource, amount, in_use, capacity) =
                (id("build"), "cpu".to_owned(), 500, 1500, 2000);
            if acquired {
                EventKind::ResourceAcquired {
                    task,
                    resource,
                    amount,
                    in_use,
                    capacity,
                }
            } else {
                EventKind::ResourceReleased {
                    task,
                    resource,
                    amount,
                    in_use,
                    capacity,
                }
            }
        };
        assert_eq!(
            body(&r(true)),
            json!({"type": "ResourceEvent", "resource_name": "cpu", "action": "ACQUIRE", "current_usage": 1500})
        );
        assert_eq!(
            body(&r(false)),
            json!({"type": "ResourceEvent", "resource_name": "cpu", "action": "RELEASE", "current_usage": 1500})
        );
        assert!(
            map(&EventKind::TaskLog {
                task: id("build"),
                stream: Stream::Stdout,
                line: "hello".into()
            })
            .is_none()
        );
    }

    /// Records what is published; `up` decides whether publishing works.
    #[derive(Debug, Default)]
    struct Fake {
        up: std::sync::atomic::AtomicBool,
        /// Publishing never finishes, as with a broker that stopped reading.
        hang: std::sync::atomic::AtomicBool,
        sent: Mutex<Vec<(String, Vec<u8>)>>,
    }

    static FAKE_URL: std::sync::LazyLock<BrokerUrl> =
        std::sync::LazyLock::new(|| BrokerUrl::parse("mqtt://fake:1").unwrap());

    impl Connector for Fake {
        fn url(&self) -> &BrokerUrl {
            &FAKE_URL
        }
        fn connect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
            Box::pin(async { Ok(()) })
        }
        fn disconnect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
            Box::pin(async { Ok(()) })
        }
        fn publish<'a>(
            &'a self,
            topic: &'a str,
            payload: Vec<u8>,
            _qos: Qos,
        ) -> BoxFuture<'a, Result<(), ConnectError>> {
            Box::pin(async move {
                if !self.is_connected() {
                    return Err(ConnectError::NotConnected { url: "fake".into() });
                }
                if self.hang.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
                self.sent.lock().unwrap().push((topic.to_owned(), payload));
                Ok(())
            })
        }
        fn subscribe<'a>(
            &'a self,
            _filter: &'a str,
            _handler: Handler,
        ) -> BoxFuture<'a, Result<(), ConnectError>> {
            Box::pin(async { Ok(()) })
        }
        fn is_connected(&self) -> bool {
            self.up.load(Ordering::Relaxed)
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            run_id: RunId::parse("r-1").unwrap(),
            ts: jiff::Timestamp::UNIX_EPOCH,
            kind,
        }
    }

    fn started(n: u32) -> Event {
        event(EventKind::TaskStarted {
            task: id("build"),
            attempt: n,
        })
    }

    #[test]
    fn the_wire_form_is_the_payload_byte_for_byte() {
        use crate::payload::{Header, Payload};
        let identity = Identity::new("o", "p", "h-1").unwrap();
        for kind in [
            EventKind::TaskPending {
                task: id("test[2]"),
                label: Some("linux \"x\"".into()),
            },
            EventKind::RunStarted {
                pipeline: "p".into(),
                jobs: 1,
                parallelism: 1,
            },
        ] {
            let pending = Pending {
                run_id: RunId::parse("r-1").unwrap(),
                ts: jiff::Timestamp::from_millisecond(1_700_000_000_123).unwrap(),
                body: map(&kind).unwrap(),
            };
            let payload = Payload {
                header: Header {
                    v: VERSION.to_owned(),
                    ts: pending.ts,
                    run_id: "r-1".to_owned(),
                    org_id: "o".to_owned(),
                    project_id: "p".to_owned(),
                    source: "h-1".to_owned(),
                },
                body: pending.body.clone(),
            };
            assert_eq!(
                String::from_utf8(encode(&pending, &identity, None).unwrap()).unwrap(),
                serde_json::to_string(&payload).unwrap()
            );
        }
    }

    #[tokio::test]
    async fn publishes_in_order_on_the_run_topic_and_skips_logs() {
        let fake = Arc::new(Fake::default());
        fake.up.store(true, Ordering::Relaxed);
        let identity = Identity::new("o", "p", "h-1").unwrap();
        let telemetry = Telemetry::new(fake.clone(), identity, 16);
        for n in 1..=3 {
            telemetry.record(&started(n));
            telemetry.record(&event(EventKind::TaskLog {
                task: id("build"),
                stream: Stream::Stderr,
                line: "x".into(),
            }));
        }
        telemetry.flush(Duration::from_secs(5)).await.unwrap();
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3);
        for (n, (topic, bytes)) in sent.iter().enumerate() {
            assert_eq!(topic, "cascade/telemetry/o/p/r-1/events");
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(v["body"]["metadata"]["attempt"], json!(n + 1));
            assert_eq!(
                v["header"],
                json!({"v": "1.0", "ts": "1970-01-01T00:00:00Z", "run_id": "r-1",
                       "org_id": "o", "project_id": "p", "source": "h-1"})
            );
        }
        assert_eq!((telemetry.published(), telemetry.dropped()), (3, 0));
    }

    #[tokio::test]
    async fn a_full_queue_or_a_broker_down_drops_and_counts() {
        let fake = Arc::new(Fake::default());
        let identity = Identity::new("o", "p", "h-1").unwrap();
        let telemetry = Telemetry::new(fake.clone(), identity, 4);
        // The publishing task cannot run before this test yields (current-thread
        // runtime), so all but the first 4 find the queue full.
        for n in 0..100 {
            telemetry.record(&started(n));
        }
        assert_eq!(telemetry.dropped(), 96);
        telemetry.flush(Duration::from_secs(5)).await.unwrap();
        // The 4 queued ones failed to publish: the broker is down.
        assert_eq!((telemetry.published(), telemetry.dropped()), (0, 100));
        assert!(fake.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_publish_that_hangs_is_given_up_and_counted() {
        let fake = Arc::new(Fake::default());
        fake.up.store(true, Ordering::Relaxed);
        fake.hang.store(true, Ordering::Relaxed);
        let identity = Identity::new("o", "p", "h-1").unwrap();
        let telemetry = Telemetry::with_options(
            fake.clone(),
            identity,
            TelemetryOptions {
                capacity: 4,
                publish_timeout: Duration::from_millis(20),
                ..TelemetryOptions::default()
            },
        );
        for n in 0..10 {
            telemetry.record(&started(n));
        }
        assert_eq!(telemetry.dropped(), 6);
        telemetry.flush(Duration::from_secs(5)).await.unwrap();
        assert_eq!((telemetry.published(), telemetry.dropped()), (0, 10));
    }

    #[tokio::test]
    async fn the_masker_sees_every_string() {
        let fake = Arc::new(Fake::default());
        fake.up.store(true, Ordering::Relaxed);
        let identity = Identity::new("o", "p", "h-1").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let masker: Masker = Arc::new(move |s: &str| {
            log.lock().unwrap().push(s.to_owned());
            s.replace("hunter2", "***")
        });
        let telemetry = Telemetry::with_options(
            fake.clone(),
            identity,
            TelemetryOptions {
                masker: Some(masker),
                ..TelemetryOptions::default()
            },
        );
        telemetry.record(&event(EventKind::TaskFinished {
            task: id("build"),
            state: TaskState::Failed,
            attempt: 1,
            exit_code: Some(1),
            duration_ms: 1,
            error: Some("password hunter2 rejected".into()),
        }));
        telemetry.flush(Duration::from_secs(5)).await.unwrap();
        let sent = fake.sent.lock().unwrap();
        let text = String::from_utf8(sent[0].1.clone()).unwrap();
        assert!(text.contains("password *** rejected"), "{text}");
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                "1.0",
                "1970-01-01T00:00:00Z",
                "FAILED",
                "TaskStateEvent",
                "build",
                "build",
                "h-1",
                "o",
                "p",
                "password hunter2 rejected",
                "r-1",
            ]
        );
    }
}
