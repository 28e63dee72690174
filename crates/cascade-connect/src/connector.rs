//! The [`Connector`] trait every broker client implements (MQTT in `mqtt.rs`, NATS in
//! `nats.rs`, a Unix socket in `unix.rs`), the broker url that picks one ([`BrokerUrl`],
//! `--telemetry mqtt://host:port`), and the settings they share.
//!
//! Topics are always written MQTT-style (`a/b/c`, filters with `+` and `#`); the NATS
//! connector translates them to subjects.

use crate::error::ConnectError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, so that [`Connector`] can be used as `dyn Connector`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivery guarantee asked of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// Fire and forget (MQTT quality of service 0; core NATS).
    #[default]
    AtMostOnce,
    /// Acknowledged by the broker, resent until it is (MQTT quality of service 1). Core NATS has no
    /// acknowledgements: the NATS connector publishes it like [`Qos::AtMostOnce`].
    AtLeastOnce,
}

/// A message received on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic, MQTT-style (`a/b/c`) whatever the broker.
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Called for every message matching a subscription, on the connector's own task: it must
/// return quickly (hand the message to a channel), never block.
pub type Handler = Arc<dyn Fn(Message) + Send + Sync>;

/// A client of one broker.
///
/// A connector keeps itself connected: after [`Connector::connect`] it reconnects on its
/// own, with capped exponential backoff, and re-establishes its subscriptions. While it is
/// not connected, [`Connector::publish`] fails at once with
/// [`ConnectError::NotConnected`] instead of queueing: callers (telemetry) drop and count.
pub trait Connector: Send + Sync + fmt::Debug {
    /// The broker this connector talks to.
    fn url(&self) -> &BrokerUrl;

    /// Starts the connection and waits for the outcome of the first attempt. On `Err` the
    /// broker was not reachable now; the connector goes on trying in the background (until
    /// [`Connector::disconnect`]). Calling it again while connected does nothing.
    fn connect(&self) -> BoxFuture<'_, Result<(), ConnectError>>;

    /// Sends what was already handed to the client, closes the connection and stops
    /// reconnecting.
    fn disconnect(&self) -> BoxFuture<'_, Result<(), ConnectError>>;

    /// Hands `payload` to the client for `topic` (no wildcards). Returns once the client
    /// has taken it, not when the broker has it; fails at once when not connected. While
    /// connected it may wait for room in the client's bounded queue: callers that must not
    /// wait put a timeout around it, as telemetry does.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: Vec<u8>,
        qos: Qos,
    ) -> BoxFuture<'a, Result<(), ConnectError>>;

    /// Calls `handler` for every message on a topic matching `filter` (`+` one level, `#`
    /// the rest). When connected, returns once the broker has the subscription, so a
    /// message published after that reaches the handler; otherwise the subscription is made
    /// on connecting.
    fn subscribe<'a>(
        &'a self,
        filter: &'a str,
        handler: Handler,
    ) -> BoxFuture<'a, Result<(), ConnectError>>;

    /// Whether the connection is up right now.
    fn is_connected(&self) -> bool;
}

/// The protocol of a broker url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Mqtt,
    Nats,
    /// A Unix socket on this machine, JSON lines both ways (`unix.rs`).
    Unix,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Nats => "nats",
            Scheme::Unix => "unix",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Nats => 4222,
            Scheme::Unix => 0,
        }
    }
}

/// `mqtt://host:port` or `nats://host:port` (port optional: 1883 and 4222), plain TCP: no
/// TLS, no credentials, no path; or `unix:/path/to.sock`, a Unix socket on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    /// A host name, an IPv4 address, or an IPv6 address without brackets; for
    /// [`Scheme::Unix`] the socket's path.
    pub host: String,
    /// 0 for [`Scheme::Unix`].
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<Self, ConnectError> {
        let invalid = |problem| ConnectError::BadUrlPart {
            found: text.to_owned(),
            problem,
        };
        if let Some((scheme, path)) = text.split_once(':')
            && scheme.eq_ignore_ascii_case("unix")
        {
            // `unix:/abs.sock`, `unix:rel.sock`, and the url spelling `unix:///abs.sock`.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() || path.contains('\0') {
                return Err(invalid("expected the socket's path after `unix:`"));
            }
            return Ok(Self {
                scheme: Scheme::Unix,
                host: path.to_owned(),
                port: 0,
            });
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| ConnectError::BadUrl {
            found: text.to_owned(),
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" => Scheme::Mqtt,
            "nats" => Scheme::Nats,
            _ => {
                return Err(ConnectError::UnsupportedScheme {
                    found: text.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(invalid("credentials in the url are not supported"));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(invalid("expected only `host:port` after the scheme"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs a closing `]`"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| invalid("expected `:port` after `]`"))?,
                    ),
                ),
            }
        } else {
            match rest.split_once(':') {
                None => (rest, None),
                Some((host, port)) => (host, Some(port)),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(invalid("expected a host name or address"));
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("expected a port from 1 to 65535"))?,
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
        })
    }
}

impl FromStr for BrokerUrl {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == Scheme::Unix {
            write!(f, "unix:{}", self.host)
        } else if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

/// Tuning shared by the connectors; the defaults suit telemetry on a LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Delay before the first reconnect attempt; doubles per failed attempt.
    pub min_backoff: Duration,
    /// Longest delay between reconnect attempts.
    pub max_backoff: Duration,
    /// How long one connection attempt may take (MQTT rounds it up to whole seconds).
    pub connect_timeout: Duration,
    /// Requests the client library queues before [`Connector::publish`] fails.
    pub queue: usize,
    /// Largest payload [`Connector::publish`] accepts.
    pub max_payload: usize,
    /// How long [`Connector::subscribe`] waits for the broker to confirm, and
    /// [`Connector::disconnect`] for queued messages to go out.
    pub ack_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            queue: 1024,
            max_payload: 256 * 1024,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// The refusal of a payload larger than [`Settings::max_payload`], the first check of
    /// every connector's `publish`.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), ConnectError> {
        if payload.len() > self.max_payload {
            return Err(ConnectError::PayloadTooLarge {
                size: payload.len(),
                limit: self.max_payload,
            });
        }
        Ok(())
    }

    /// The delay before reconnect attempt `attempt` (1-based): `min_backoff` doubled per
    /// earlier failure, never more than `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.min_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// A connector for `url`, not yet connected (no IO happens here). Call
/// [`Connector::connect`]; if that fails, the connector keeps trying in the background, so
/// a broker that comes up later still gets the events from then on.
pub fn connector(url: &BrokerUrl) -> Box<dyn Connector> {
    connector_with(url, Settings::default())
}

/// [`connector`] with explicit [`Settings`].
pub fn connector_with(url: &BrokerUrl, settings: Settings) -> Box<dyn Connector> {
    match url.scheme {
        Scheme::Mqtt => Box::new(crate::mqtt::MqttConnector::new(url.clone(), settings)),
        Scheme::Nats => Box::new(crate::nats::NatsConnector::new(url.clone(), settings)),
        Scheme::Unix => Box::new(crate::unix::UnixConnector::new(url.clone(), settings)),
    }
}

/// A connector for `url`, connected: fails when the broker is not reachable now.
pub async fn connect(url: &BrokerUrl) -> Result<Box<dyn Connector>, ConnectError> {
    let connector = connector(url);
    connector.connect().await?;
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_and_print() {
        let url = BrokerUrl::parse("mqtt://broker.local:1884").unwrap();
        assert_eq!(url.scheme, Scheme::Mqtt);
        assert_eq!(url.host, "broker.local");
        assert_eq!(url.port, 1884);
        assert_eq!(url.to_string(), "mqtt://broker.local:1884");
        assert_eq!(
            BrokerUrl::parse("nats://127.0.0.1").unwrap().to_string(),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            BrokerUrl::parse("MQTT://[::1]:9/").unwrap().to_string(),
            "mqtt://[::1]:9"
        );
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        for (text, path) in [
            ("unix:/run/c.sock", "/run/c.sock"),
            ("UNIX:rel.sock", "rel.sock"),
            ("unix:///tmp/x.sock", "/tmp/x.sock"),
        ] {
            let url = BrokerUrl::parse(text).unwrap();
            assert_eq!((url.scheme, url.host.as_str()), (Scheme::Unix, path));
            assert_eq!(url.to_string(), format!("unix:{path}"));
        }
    }

    #[test]
    fn bad_broker_urls_say_what_was_expected() {
        for (text, message) in [
            (
                "localhost:1883",
                "expected a broker url like `mqtt://host:port`, `nats://host:port` or `unix:/path/to.sock`, found `localhost:1883`",
            ),
            (
                "http://h:80",
                "broker url `http://h:80`: unsupported scheme `http` (expected `mqtt`, `nats` or `unix`)",
            ),
            (
                "unix:",
                "broker url `unix:`: expected the socket's path after `unix:`",
            ),
            (
                "mqtt.local",
                "expected a broker url like `mqtt://host:port`, `nats://host:port` or `unix:/path/to.sock`, found `mqtt.local`",
            ),
            (
                "mqtt://h:0",
                "broker url `mqtt://h:0`: expected a port from 1 to 65535",
            ),
            (
                "mqtt://h:99999",
                "broker url `mqtt://h:99999`: expected a port from 1 to 65535",
            ),
            (
                "nats://u:p@h:4222",
                "broker url `nats://u:p@h:4222`: credentials in the url are not supported",
            ),
            (
                "nats://h:4222/x",
                "broker url `nats://h:4222/x`: expected only `host:port` after the scheme",
            ),
            (
                "mqtt://:1883",
                "broker url `mqtt://:1883`: expected a host name or address",
            ),
            (
                "mqtt://[::1",
                "broker url `mqtt://[::1`: an IPv6 address needs a closing `]`",
            ),
        ] {
            assert_eq!(BrokerUrl::parse(text).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Settings {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Settings::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(1));
        assert_eq!(s.backoff(0), Duration::from_millis(100));
    }
}
