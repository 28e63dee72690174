//! The Unix socket connector against a real listener: JSON lines out for each publish,
//! JSON lines in for the subscriptions, a new session after the peer goes away.

use crate::PATIENCE;
use cascade_connect::{BrokerUrl, Message, Qos, Settings, connector_with};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

fn settings() -> Settings {
    Settings {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..Settings::default()
    }
}

#[tokio::test]
async fn lines_out_for_publishes_and_lines_in_for_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let url = BrokerUrl::parse(&format!("unix:{}", path.display())).unwrap();
    let connector = connector_with(&url, settings());
    let (tx, mut received) = mpsc::unbounded_channel::<Message>();
    connector
        .subscribe(
            "cascade/control/o/p/#",
            Arc::new(move |m| {
                let _ = tx.send(m);
            }),
        )
        .await
        .unwrap();
    let (accepted, connected) = tokio::join!(listener.accept(), connector.connect());
    connected.unwrap();
    assert!(connector.is_connected());
    let (stream, _) = accepted.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();

    connector
        .publish(
            "cascade/telemetry/o/p/r/events",
            br#"{"body":{"event":"ENGINE_STARTED"}}"#.to_vec(),
            Qos::AtMostOnce,
        )
        .await
        .unwrap();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"topic": "cascade/telemetry/o/p/r/events", "payload": {"body": {"event": "ENGINE_STARTED"}}})
    );

    // A line that is not a message and one for another topic are skipped.
    write
        .write_all(b"not json\n{\"topic\": \"elsewhere/x\", \"payload\": {}}\n{\"topic\": \"cascade/control/o/p/pause\", \"payload\": {\"command\": \"pause\"}}\n")
        .await
        .unwrap();
    let message = tokio::time::timeout(PATIENCE, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.topic, "cascade/control/o/p/pause");
    assert_eq!(message.payload, br#"{"command":"pause"}"#);

    // The peer goes away: publishing fails (at once, or on the write that finds it gone)
    // and a new listener gets a new session.
    drop((lines, write));
    drop(listener);
    std::fs::remove_file(&path).unwrap();
    let listener = UnixListener::bind(&path).unwrap();
    let (stream, _) = loop {
        let _ = connector
            .publish("a/b", b"{}".to_vec(), Qos::AtMostOnce)
            .await;
        if let Ok(accepted) =
            tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
        {
            break accepted.unwrap();
        }
    };
    let mut lines = BufReader::new(stream).lines();
    let published = tokio::time::timeout(PATIENCE, async {
        loop {
            if connector
                .publish("a/again", b"{}".to_vec(), Qos::AtMostOnce)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    published.await.unwrap();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(line, r#"{"topic":"a/again","payload":{}}"#);
    connector.disconnect().await.unwrap();
    assert!(!connector.is_connected());
    assert!(
        tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .is_none(),
        "closed"
    );
}

#[tokio::test]
async fn no_listener_is_an_error_at_once_and_publishing_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let url =
        BrokerUrl::parse(&format!("unix:{}", dir.path().join("none.sock").display())).unwrap();
    let connector = connector_with(&url, settings());
    let error = connector.connect().await.unwrap_err().to_string();
    assert!(error.contains("none.sock"), "{error}");
    assert!(
        connector
            .publish("a/b", b"{}".to_vec(), Qos::AtMostOnce)
            .await
            .is_err()
    );
    connector.disconnect().await.unwrap();
}
