//! NATS JetStream as the event queue (`--nats-url`).
//!
//! - Stream `CASCADE_EVENTS`, subjects `cascade.events.>` (`cascade.events.<source>.<kind>`),
//!   file storage, work-queue retention: a message stays until the orchestrator acks it.
//! - Each message carries `Nats-Msg-Id: <source>:<delivery id>`, so JetStream drops a
//!   re-sent delivery within its window; the SQLite `events` table drops it after that.
//! - A durable pull consumer `cascade-orchestrator`, explicit acks, `max_deliver`: a
//!   message is acked only after the event is committed to SQLite; one that still cannot
//!   be stored after `max_deliver` deliveries is dead-lettered (kept in SQLite with
//!   status `dead`, and acked), never silently dropped.
//! - An event larger than the server's max payload is stored in SQLite first and the
//!   message carries its id instead (claim check).

use crate::error::chain;
use crate::inbox::Accepted;
use crate::intake::Intake;
use crate::store_thread::StoreThread;
use async_nats::jetstream::{self, consumer, stream};
use cascade_store::{NewEvent, Orchestration, Reader};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const STREAM: &str = "CASCADE_EVENTS";
pub const CONSUMER: &str = "cascade-orchestrator";

#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot set up the stream {STREAM}")]
    Stream(#[source] jetstream::context::CreateStreamError),
    #[error("publishing to {STREAM} failed")]
    Publish(#[source] jetstream::context::PublishError),
    #[error("the event store failed")]
    Store(#[source] cascade_store::StoreError),
}

/// The message body: the event, or a claim check for it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Wire {
    source: String,
    delivery_id: String,
    kind: String,
    repo: Option<String>,
    task_id: Option<String>,
    event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
    /// The id of the payload stored in SQLite when it was too large to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_check: Option<String>,
}

/// A connection to the stream, for publishing.
#[derive(Clone)]
pub struct JetStream {
    client: async_nats::Client,
    context: jetstream::Context,
    intake: Intake,
    reader: Arc<Mutex<Reader>>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream").finish_non_exhaustive()
    }
}

impl JetStream {
    /// Connects (retrying in the background if the server is down at first) and makes
    /// sure the stream exists.
    pub async fn connect(
        url: &str,
        intake: Intake,
        reader: Reader,
    ) -> Result<Self, JetStreamError> {
        let client = async_nats::ConnectOptions::new()
            .name("cascade-serve")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| JetStreamError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let context = jetstream::new(client.clone());
        context
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["cascade.events.>".to_owned()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_mins(2),
                ..Default::default()
            })
            .await
            .map_err(JetStreamError::Stream)?;
        Ok(Self {
            client,
            context,
            intake,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Publishes an event; resolves once JetStream has it (or it is known already).
    pub async fn publish(&self, event: &NewEvent) -> Result<Accepted, JetStreamError> {
        // Secret values never reach the stream (nor, later, the database) unmasked.
        let event = &self.intake.masked(event);
        let (source, delivery) = (event.source.clone(), event.delivery_id.clone());
        let reader = Arc::clone(&self.reader);
        let seen = tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .map_err(|_| cascade_store::StoreError::WriterGone)
                .and_then(|r| r.seen(&source, &delivery))
        })
        .await
        .map_err(|_| JetStreamError::Store(cascade_store::StoreError::WriterGone))?
        .map_err(JetStreamError::Store)?;
        if seen {
            return Ok(Accepted::Duplicate);
        }
        let mut wire = Wire {
            source: event.source.clone(),
            delivery_id: event.delivery_id.clone(),
            kind: event.kind.clone(),
            repo: event.repo.clone(),
            task_id: event.task_id.clone(),
            event_type: event.event_type.clone(),
            payload: Some(event.payload.clone()),
            claim_check: None,
        };
        let mut body = serde_json::to_vec(&wire).unwrap_or_default();
        // Headroom for headers and protocol.
        let limit = self.client.server_info().max_payload.saturating_sub(1024);
        if body.len() > limit {
            let id = format!("{}:{}", event.source, event.delivery_id);
            let payload = event.payload.to_string().into_bytes();
            self.intake
                .put_body(&id, payload)
                .await
                .map_err(JetStreamError::Store)?;
            wire.payload = None;
            wire.claim_check = Some(id);
            body = serde_json::to_vec(&wire).unwrap_or_default();
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}:{}", event.source, event.delivery_id).as_str(),
        );
        let subject = format!(
            "cascade.events.{}.{}",
            token(&event.source),
            token(&event.kind)
        );
        let ack = self
            .context
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(JetStreamError::Publish)?
            .await
            .map_err(JetStreamError::Publish)?;
        Ok(if ack.duplicate {
            Accepted::Duplicate
        } else {
            Accepted::Queued
        })
    }

    /// Moves events from the stream into SQLite until `shutdown`, waking the
    /// orchestrator after each; survives the server going away and coming back.
    pub async fn consume(
        self,
        store: StoreThread<Orchestration>,
        max_deliver: i64,
        wake: Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            let messages = async {
                let stream = self.context.get_stream(STREAM).await?;
                let consumer: consumer::PullConsumer = stream
                    .get_or_create_consumer(
                        CONSUMER,
                        consumer::pull::Config {
                            durable_name: Some(CONSUMER.to_owned()),
                            ack_policy: consumer::AckPolicy::Explicit,
                            max_deliver,
                            ack_wait: Duration::from_secs(30),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok::<_, async_nats::Error>(consumer.messages().await?)
            };
            let mut messages = tokio::select! {
                () = shutdown.cancelled() => return,
                m = messages => match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "NATS consumer unavailable; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = messages.next() => n,
                };
                match next {
                    Some(Ok(message)) => {
                        self.take(&store, &message, max_deliver).await;
                        wake.notify_one();
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "NATS consumer interrupted; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Stores one message's event, then acks it; dead-letters what cannot be stored.
    async fn take(
        &self,
        store: &StoreThread<Orchestration>,
        message: &jetstream::Message,
        max_deliver: i64,
    ) {
        let delivered = message.info().map_or(1, |i| i.delivered);
        let sequence = message.info().map_or(0, |i| i.stream_sequence);
        let body = message.payload.clone();
        let stored = store
            .run(move |store| -> Result<(), Unstorable> {
                let wire: Wire = serde_json::from_slice(&body).map_err(Unstorable::NotAnEvent)?;
                let payload = match (&wire.payload, &wire.claim_check) {
                    (Some(p), _) => p.clone(),
                    (None, Some(id)) => {
                        let body = store
                            .body(id)?
                            .ok_or_else(|| Unstorable::NoBody(id.clone()))?;
                        serde_json::from_slice(&body).map_err(Unstorable::BadBody)?
                    }
                    (None, None) => return Err(Unstorable::NoPayload),
                };
                store.record(&[NewEvent {
                    source: wire.source,
                    delivery_id: wire.delivery_id,
                    kind: wire.kind,
                    repo: wire.repo,
                    task_id: wire.task_id,
                    event_type: wire.event_type,
                    payload,
                }])?;
                Ok(())
            })
            .await
            .unwrap_or(Err(Unstorable::Store(
                cascade_store::StoreError::WriterGone,
            )))
            .map_err(|e| chain(&e));
        match stored {
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    // Not acked: it comes again, and is recognised as a duplicate.
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            Err(reason) if delivered >= max_deliver => {
                tracing::error!(sequence, reason, "dead-lettering an event");
                let dead = NewEvent {
                    source: "dead-letter".to_owned(),
                    delivery_id: format!("{STREAM}:{sequence}"),
                    kind: "dead".to_owned(),
                    repo: None,
                    task_id: None,
                    event_type: None,
                    payload: serde_json::json!({
                        "reason": reason,
                        "subject": message.subject.as_str(),
                        "body": String::from_utf8_lossy(&message.payload),
                    }),
                };
                let dead = store.call(move |s| s.record(&[dead])).await;
                if dead.is_ok() {
                    let _ = message.double_ack().await;
                }
            }
            Err(reason) => {
                tracing::warn!(
                    sequence,
                    delivered,
                    reason,
                    "event not stored; NATS delivers it again"
                );
                let _ = message
                    .ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(500))))
                    .await;
            }
        }
    }
}

/// Why a message's event cannot be stored (the dead letter's `reason`, with its causes).
#[derive(Debug, thiserror::Error)]
enum Unstorable {
    #[error("not an event")]
    NotAnEvent(#[source] serde_json::Error),
    #[error("claim check `{0}` names no stored body")]
    NoBody(String),
    #[error("the claim check's body is not JSON")]
    BadBody(#[source] serde_json::Error),
    #[error("an event without payload")]
    NoPayload,
    #[error(transparent)]
    Store(#[from] cascade_store::StoreError),
}

/// A subject token: what NATS allows, nothing else.
fn token(text: &str) -> String {
    let t: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() { "_".to_owned() } else { t }
}
