//! What can go wrong talking to a broker, and in a control message.

/// A problem with a broker url, a name, or a broker connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "expected a broker url like `mqtt://host:port`, `nats://host:port` or `unix:/path/to.sock`, found `{found}`"
    )]
    BadUrl { found: String },
    #[error("broker url `{found}`: {problem}")]
    BadUrlPart {
        found: String,
        problem: &'static str,
    },
    #[error(
        "broker url `{found}`: unsupported scheme `{scheme}` (expected `mqtt`, `nats` or `unix`)"
    )]
    UnsupportedScheme { found: String, scheme: String },
    #[error("{what} `{found}`: expected 1 to 64 characters from `A-Z a-z 0-9 _ -`")]
    BadName { what: &'static str, found: String },
    #[error("topic `{topic}` has no NATS subject: {problem}")]
    BadTopic {
        topic: String,
        problem: &'static str,
    },
    #[error("not connected to {url}")]
    NotConnected { url: String },
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("payload of {size} bytes is over the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("timed out after {ms} ms waiting for {what}")]
    Timeout { what: &'static str, ms: u128 },
    #[error("cannot serialise a telemetry payload")]
    Serialise(#[source] serde_json::Error),
    #[error("topic `{topic}` is not an mqtt topic name: `+` and `#` only go in filters")]
    MqttTopic { topic: String },
    #[error("mqtt request to {url} failed")]
    Mqtt {
        url: String,
        #[source]
        source: rumqttc::ClientError,
    },
    #[error("cannot connect to {url}")]
    NatsConnect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats publish to {url} failed")]
    NatsPublish {
        url: String,
        #[source]
        source: async_nats::PublishError,
    },
    #[error("nats subscribe to `{subject}` failed")]
    NatsSubscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("nats flush to {url} failed")]
    NatsFlush {
        url: String,
        #[source]
        source: async_nats::client::FlushError,
    },
    #[error("nats drain of {url} failed")]
    NatsDrain {
        url: String,
        #[source]
        source: async_nats::client::DrainError,
    },
}

/// Why a control message was refused. The engine ignores such a message (and logs why);
/// it never acts on a message it does not fully understand.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control payload is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("control payload: expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("control payload of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("control payload has no `command` (expected one of: pause, resume, cancel, limit)")]
    MissingCommand,
    #[error("unknown control command `{found}` (expected one of: pause, resume, cancel, limit)")]
    UnknownCommand { found: String },
    #[error("control `{command}`: unknown field `{field}` (expected: {expected})")]
    UnknownField {
        command: &'static str,
        field: String,
        expected: &'static str,
    },
    #[error("control `{command}`: missing field `{field}`")]
    MissingField {
        command: &'static str,
        field: &'static str,
    },
    #[error("control `{command}`: field `{field}`: expected {expected}, found `{found}`")]
    BadField {
        command: &'static str,
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("control on topic `{topic}`: expected the topic `{expected}` for command `{command}`")]
    WrongTopic {
        topic: String,
        expected: String,
        command: &'static str,
    },
}
