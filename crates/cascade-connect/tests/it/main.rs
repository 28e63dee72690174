#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Integration tests against real brokers: a mosquitto and a nats-server started by each
//! test on a free loopback port (see `cascade-test`), killed and restarted at will.

mod control;
mod masking;
mod telemetry;
mod unix;

use cascade_connect::{BrokerUrl, Connector, Identity, Message, Settings, connector_with};
use cascade_test::{Mosquitto, NatsServer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen: a bound on a hang, never a
/// measurement.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Mqtt,
    Nats,
}

/// A real broker of either kind.
#[derive(Debug)]
pub(crate) enum Broker {
    Mqtt(Mosquitto),
    Nats(NatsServer),
}

impl Broker {
    pub(crate) fn start(kind: Kind) -> Self {
        match kind {
            Kind::Mqtt => Broker::Mqtt(Mosquitto::start()),
            Kind::Nats => Broker::Nats(NatsServer::start()),
        }
    }

    pub(crate) fn url(&self) -> BrokerUrl {
        let text = match self {
            Broker::Mqtt(b) => b.url(),
            Broker::Nats(b) => b.url(),
        };
        BrokerUrl::parse(&text).unwrap()
    }

    pub(crate) fn kill(&mut self) {
        match self {
            Broker::Mqtt(b) => b.kill(),
            Broker::Nats(b) => b.kill(),
        }
    }

    pub(crate) fn restart(&mut self) {
        match self {
            Broker::Mqtt(b) => b.restart(),
            Broker::Nats(b) => b.restart(),
        }
    }
}

/// Quick reconnects, so the reconnect tests do not wait for the default backoff.
pub(crate) fn settings() -> Settings {
    Settings {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        ..Settings::default()
    }
}

pub(crate) fn identity() -> Identity {
    Identity::new("acme", "web", "ci-host-4242").unwrap()
}

/// A connector that is connected.
pub(crate) async fn connected(url: &BrokerUrl) -> Arc<dyn Connector> {
    let connector: Arc<dyn Connector> = Arc::from(connector_with(url, settings()));
    connector.connect().await.unwrap();
    assert!(connector.is_connected());
    connector
}

/// Messages received on a subscription, in order.
#[derive(Debug)]
pub(crate) struct Inbox(mpsc::UnboundedReceiver<Message>);

impl Inbox {
    pub(crate) async fn subscribe(connector: &dyn Connector, filter: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        connector
            .subscribe(
                filter,
                Arc::new(move |m| {
                    let _ = tx.send(m);
                }),
            )
            .await
            .unwrap();
        Self(rx)
    }

    /// A raw async-nats subscriber: checks the subject really has dots.
    pub(crate) async fn nats_raw(url: &BrokerUrl, subject: &str) -> Self {
        let client = async_nats::connect(url.to_string()).await.unwrap();
        let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
        client.flush().await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            use futures::StreamExt;
            let _keep = client;
            while let Some(m) = sub.next().await {
                let _ = tx.send(Message {
                    topic: m.subject.to_string(),
                    payload: m.payload.to_vec(),
                });
            }
        });
        Self(rx)
    }

    pub(crate) async fn next(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.0.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {PATIENCE:?}"))
            .expect("the subscription ended")
    }

    /// The next message if one arrives within `wait`.
    pub(crate) async fn within(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.0.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Polls `done` until it holds; panics naming `what` after [`PATIENCE`].
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
