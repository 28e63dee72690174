//! No secret of the corpus reaches a broker, in any form the payload could carry it: as
//! is, line by line, or JSON-escaped.

use crate::{Broker, Inbox, Kind, connected, identity};
use cascade_connect::payload::{
    Body, Header, Payload, TaskMetadata, TaskStateEvent, TelemetryState,
};
use cascade_connect::{Masker, Telemetry, TelemetryOptions};
use cascade_plan::{Event, EventKind, RunId, TaskId, TaskState};
use std::sync::Arc;
use std::time::Duration;

const CORPUS: &[&str] = &[
    "s3cr3t-T0ken-value",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    r#"pa"ss'wo\rd"#,
    "c2VjcmV0LXRva2VuLXZhbHVlLWJhc2U2NA==",
    "pässwörd-ünïcode-✓",
    "line-one-secret\r\nline-two-secret",
];

/// Every form a secret could take in a payload's bytes.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    forms.extend(secret.lines().map(str::to_owned));
    let escaped = serde_json::to_string(secret).unwrap();
    forms.push(escaped.trim_matches('"').to_owned());
    for line in secret.lines() {
        let escaped = serde_json::to_string(line).unwrap();
        forms.push(escaped.trim_matches('"').to_owned());
    }
    forms.retain(|f| f.len() >= 4);
    forms
}

/// The secrets (in any form) found in `text`.
fn leaks(text: &str) -> Vec<String> {
    CORPUS
        .iter()
        .flat_map(|s| forms(s))
        .filter(|f| text.contains(f.as_str()))
        .collect()
}

/// Masks each secret and each of its lines, as the engine's masker does.
fn masker() -> Masker {
    Arc::new(|text: &str| {
        let mut out = text.to_owned();
        for secret in CORPUS {
            for piece in std::iter::once(*secret).chain(secret.lines()) {
                if !piece.is_empty() {
                    out = out.replace(piece, "***");
                }
            }
        }
        out
    })
}

fn events() -> Vec<Event> {
    let task = |t: &str| TaskId::parse(t).unwrap();
    let mut kinds = Vec::new();
    for secret in CORPUS {
        kinds.push(EventKind::TaskPending {
            task: task("deploy[0]"),
            label: Some(format!("target={secret}")),
        });
        kinds.push(EventKind::ResourceAcquired {
            task: task("deploy[0]"),
            resource: format!("pool-{secret}"),
            amount: 1,
            in_use: 1,
            capacity: 4,
        });
        kinds.push(EventKind::TaskFinished {
            task: task("deploy[0]"),
            state: TaskState::Failed,
            attempt: 1,
            exit_code: Some(1),
            duration_ms: 3,
            error: Some(format!("login failed for \"{secret}\"\nsee log")),
        });
    }
    kinds
        .into_iter()
        .map(|kind| Event {
            run_id: RunId::parse("r-1").unwrap(),
            ts: jiff::Timestamp::UNIX_EPOCH,
            kind,
        })
        .collect()
}

#[test]
fn the_leak_detector_finds_every_secret_unmasked() {
    for secret in CORPUS {
        let payload = Payload {
            header: Header {
                v: "1.0".into(),
                ts: jiff::Timestamp::UNIX_EPOCH,
                run_id: "r-1".into(),
                org_id: "o".into(),
                project_id: "p".into(),
                source: "h".into(),
            },
            body: Body::TaskStateEvent(TaskStateEvent {
                task_id: "t".into(),
                task_name: "t".into(),
                state: TelemetryState::Failed,
                duration_ms: None,
                error: Some(format!("x {secret} y")),
                metadata: TaskMetadata::default(),
            }),
        };
        let text = serde_json::to_string(&payload).unwrap();
        assert!(!leaks(&text).is_empty(), "{secret:?} not found in {text}");
        let masked = masker()(&format!("x {secret} y"));
        assert!(leaks(&masked).is_empty(), "{masked}");
    }
}

async fn no_secret_reaches_the_broker(kind: Kind) {
    let broker = Broker::start(kind);
    let subscriber = connected(&broker.url()).await;
    let mut inbox = Inbox::subscribe(subscriber.as_ref(), "cascade/telemetry/#").await;
    let publisher = connected(&broker.url()).await;
    let telemetry = Telemetry::with_options(
        publisher,
        identity(),
        TelemetryOptions {
            masker: Some(masker()),
            ..TelemetryOptions::default()
        },
    );
    let events = events();
    for event in &events {
        telemetry.record(event);
    }
    telemetry.flush(Duration::from_secs(20)).await.unwrap();
    for _ in &events {
        let message = inbox.next().await;
        let text = String::from_utf8(message.payload).unwrap();
        assert_eq!(leaks(&text), Vec::<String>::new(), "in {text}");
        assert!(text.contains("***"), "nothing was masked in {text}");
    }
    assert_eq!(telemetry.published(), events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_payloads_never_carry_a_secret() {
    no_secret_reaches_the_broker(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_payloads_never_carry_a_secret() {
    no_secret_reaches_the_broker(Kind::Nats).await;
}
