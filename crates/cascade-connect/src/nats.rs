//! The NATS connector (async-nats, core NATS, plain TCP).
//!
//! Topics stay MQTT-style everywhere else; here they become subjects: `a/b/c` ↔ `a.b.c`,
//! `+` ↔ `*`, `#` ↔ `>`. A level that would change the subject's shape (a `.`, a space, a
//! `*` or `>` inside it) is refused rather than guessed at.
//!
//! async-nats reconnects on its own (here: forever, with the same capped backoff as
//! MQTT) and re-sends its subscriptions; each subscription is read by a task this
//! connector owns. Core NATS has no acknowledgements, so both [`Qos`] values publish the
//! same way.

use crate::connector::{BoxFuture, BrokerUrl, Connector, Handler, Message, Qos, Settings};
use crate::error::ConnectError;
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::task::JoinSet;

/// The subject for an MQTT-style topic without wildcards.
pub fn subject_of_topic(topic: &str) -> Result<String, ConnectError> {
    // The usual case in one pass (a telemetry topic, once per event): no empty level and
    // nothing to refuse, so every `/` becomes a `.`.
    let plain = !topic.is_empty()
        && !topic.starts_with('/')
        && !topic.ends_with('/')
        && !topic.contains("//")
        && !topic.contains(['.', '*', '>', '+', '#'])
        && !topic.contains(char::is_whitespace);
    if plain {
        return Ok(topic.replace('/', "."));
    }
    convert(topic, false)
}

/// The subject for an MQTT-style filter (`+` → `*`, a final `#` → `>`).
pub fn subject_of_filter(filter: &str) -> Result<String, ConnectError> {
    convert(filter, true)
}

/// The MQTT-style topic of a subject.
pub fn topic_of_subject(subject: &str) -> String {
    subject.replace('.', "/")
}

fn convert(topic: &str, wildcards: bool) -> Result<String, ConnectError> {
    let bad = |problem| ConnectError::BadTopic {
        topic: topic.to_owned(),
        problem,
    };
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        out.push(match *level {
            "" => return Err(bad("empty level")),
            "+" if wildcards => "*",
            "#" if wildcards && i + 1 == levels.len() => ">",
            "#" if wildcards => return Err(bad("`#` must be the last level")),
            "+" | "#" => return Err(bad("wildcards are only allowed in filters")),
            l if l.contains(['.', '*', '>', '+', '#']) || l.contains(char::is_whitespace) => {
                return Err(bad("a level contains `.`, `*`, `>`, `+`, `#` or a space"));
            }
            l => l,
        });
    }
    Ok(out.join("."))
}

/// A [`Connector`] to a NATS server.
pub struct NatsConnector {
    url: BrokerUrl,
    settings: Settings,
    /// Behind an `Arc`: a `Client` clone allocates, and `publish` and `is_connected` run
    /// once per telemetry event.
    client: Mutex<Option<Arc<Client>>>,
    /// Filters subscribed before there was a client; subscribed on connecting.
    waiting: Mutex<Vec<(String, Handler)>>,
    /// One reader per subscription; aborted on drop and on disconnect.
    readers: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for NatsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConnector")
            .field("url", &self.url)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NatsConnector {
    /// Not connected yet: see [`Connector::connect`].
    pub fn new(url: BrokerUrl, settings: Settings) -> Self {
        Self {
            url,
            settings,
            client: Mutex::new(None),
            waiting: Mutex::default(),
            readers: Mutex::new(JoinSet::new()),
        }
    }

    fn options(&self) -> ConnectOptions {
        let settings = self.settings.clone();
        ConnectOptions::new()
            .connection_timeout(self.settings.connect_timeout)
            .client_capacity(self.settings.queue.max(1))
            .max_reconnects(None)
            // async-nats asks for a delay before every attempt, counting from 1 for the
            // first: that one goes at once (it cost every connection 100 ms), as in
            // async-nats' own default; later ones back off.
            .reconnect_delay_callback(move |attempts| match attempts {
                0 | 1 => std::time::Duration::ZERO,
                n => settings.backoff(u32::try_from(n).unwrap_or(u32::MAX)),
            })
    }

    fn address(&self) -> String {
        self.url.to_string()
    }

    fn current(&self) -> Option<Arc<Client>> {
        lock(&self.client).clone()
    }

    /// Subscribes on `client` and reads the subscription on an owned task.
    async fn attach(
        &self,
        client: &Client,
        filter: &str,
        handler: Handler,
    ) -> Result<(), ConnectError> {
        let subject = subject_of_filter(filter)?;
        let mut subscriber = client.subscribe(subject.clone()).await.map_err(|source| {
            ConnectError::NatsSubscribe {
                subject: subject.clone(),
                source,
            }
        })?;
        lock(&self.readers).spawn(async move {
            while let Some(message) = subscriber.next().await {
                handler(Message {
                    topic: topic_of_subject(&message.subject),
                    payload: message.payload.to_vec(),
                });
            }
        });
        if client.connection_state() == State::Connected {
            self.barrier(client).await?;
        }
        Ok(())
    }

    /// Returns once the server has processed everything this client sent before: a
    /// message to a fresh subject of our own comes back only after our earlier SUBs took
    /// effect (the server handles one connection's commands in order).
    async fn barrier(&self, client: &Client) -> Result<(), ConnectError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let subject = format!(
            "_CASCADE.barrier.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut probe = client.subscribe(subject.clone()).await.map_err(|source| {
            ConnectError::NatsSubscribe {
                subject: subject.clone(),
                source,
            }
        })?;
        client
            .publish(subject, Vec::new().into())
            .await
            .map_err(|source| ConnectError::NatsPublish {
                url: self.address(),
                source,
            })?;
        let came_back = tokio::time::timeout(self.settings.ack_timeout, probe.next()).await;
        let _ = probe.unsubscribe().await;
        match came_back {
            Ok(Some(_)) => Ok(()),
            _ => Err(ConnectError::Timeout {
                what: "the nats server to confirm a subscription",
                ms: self.settings.ack_timeout.as_millis(),
            }),
        }
    }
}

impl Connector for NatsConnector {
    fn url(&self) -> &BrokerUrl {
        &self.url
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            if self.current().is_some() {
                return if self.is_connected() {
                    Ok(())
                } else {
                    Err(ConnectError::NotConnected {
                        url: self.address(),
                    })
                };
            }
            // First a plain attempt, to report whether the server is there; if it is not,
            // a client that keeps trying in the background takes its place.
            let (client, outcome) = match self.options().connect(self.address()).await {
                Ok(client) => (client, Ok(())),
                Err(source) => {
                    let client = self
                        .options()
                        .retry_on_initial_connect()
                        .connect(self.address())
                        .await
                        .map_err(|source| ConnectError::NatsConnect {
                            url: self.address(),
                            source,
                        })?;
                    let error = ConnectError::NatsConnect {
                        url: self.address(),
                        source,
                    };
                    (client, Err(error))
                }
            };
            *lock(&self.client) = Some(Arc::new(client.clone()));
            let waiting = std::mem::take(&mut *lock(&self.waiting));
            for (filter, handler) in waiting {
                self.attach(&client, &filter, handler).await?;
            }
            outcome
        })
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ConnectError>> {
        Box::pin(async move {
            let Some(client) = lock(&self.client).take() else {
                return Ok(());
            };
            let drained = if client.connection_state() == State::Connected {
                // A flush first: drain alone closes without sending what was published
                // just before (a control command sent by a short-lived process was lost).
                let _ = tokio::time::timeout(self.settings.ack_timeout, client.flush()).await;
                // Drain sends what is queued, then closes.
                tokio::time::timeout(self.settings.ack_timeout, client.drain())
                    .await
                    .ok()
                    .map(|r| {
                        r.map_err(|source| ConnectError::NatsDrain {
                            url: self.address(),
                            source,
                        })
                    })
            } else {
                None
            };
            lock(&self.readers).abort_all();
            drained.unwrap_or(Ok(()))
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
            let subject = subject_of_topic(topic)?;
            let client = match self.current() {
                Some(client) if client.connection_state() == State::Connected => client,
                _ => {
                    return Err(ConnectError::NotConnected {
                        url: self.address(),
                    });
                }
            };
            client
                .publish(subject, payload.into())
                .await
                .map_err(|source| ConnectError::NatsPublish {
                    url: self.address(),
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
            subject_of_filter(filter)?;
            if let Some(client) = self.current() {
                self.attach(&client, filter, handler).await
            } else {
                lock(&self.waiting).push((filter.to_owned(), handler));
                Ok(())
            }
        })
    }

    fn is_connected(&self) -> bool {
        lock(&self.client)
            .as_ref()
            .is_some_and(|c| c.connection_state() == State::Connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_filters_become_subjects() {
        assert_eq!(
            subject_of_topic("cascade/telemetry/o/p/r-1/events").unwrap(),
            "cascade.telemetry.o.p.r-1.events"
        );
        assert_eq!(
            subject_of_filter("cascade/control/o/p/#").unwrap(),
            "cascade.control.o.p.>"
        );
        assert_eq!(subject_of_filter("a/+/c").unwrap(), "a.*.c");
        assert_eq!(topic_of_subject("a.b.c"), "a/b/c");
    }

    #[test]
    fn topics_that_would_change_shape_are_refused() {
        for (topic, problem) in [
            (
                "a/b.c",
                "a level contains `.`, `*`, `>`, `+`, `#` or a space",
            ),
            ("a/*", "a level contains `.`, `*`, `>`, `+`, `#` or a space"),
            ("a/>", "a level contains `.`, `*`, `>`, `+`, `#` or a space"),
            (
                "a/b c",
                "a level contains `.`, `*`, `>`, `+`, `#` or a space",
            ),
            ("a//b", "empty level"),
            ("a/+", "wildcards are only allowed in filters"),
            ("a/#", "wildcards are only allowed in filters"),
        ] {
            assert_eq!(
                subject_of_topic(topic).unwrap_err().to_string(),
                format!("topic `{topic}` has no NATS subject: {problem}")
            );
        }
        assert_eq!(
            subject_of_filter("a/#/b").unwrap_err().to_string(),
            "topic `a/#/b` has no NATS subject: `#` must be the last level"
        );
    }
}
