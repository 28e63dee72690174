//! Control commands through real brokers: sent by one connector, received in order by
//! another; invalid messages and other projects' commands never come out.

use crate::{Broker, Kind, PATIENCE, connected};
use cascade_connect::{Control, Qos, control_topic, send_control, subscribe_control};
use cascade_plan::RunId;

async fn commands_round_trip(kind: Kind) {
    let broker = Broker::start(kind);
    let engine = connected(&broker.url()).await;
    let operator = connected(&broker.url()).await;
    let mut commands = subscribe_control(engine.as_ref(), "acme", "web")
        .await
        .unwrap();

    let cancel = Control::Cancel {
        run_id: RunId::parse("lz1k2m3n-4a5b6c").unwrap(),
    };
    let sent = [
        Control::Pause,
        Control::Resume,
        cancel,
        Control::Limit { jobs: 4 },
    ];
    for control in &sent {
        send_control(operator.as_ref(), "acme", "web", control)
            .await
            .unwrap();
    }
    // None of these may come out: bad JSON, an unknown command, a payload that disagrees
    // with its topic, another project's command.
    let raw = |command: &str, payload: &str| {
        (
            control_topic("acme", "web", command),
            payload.as_bytes().to_vec(),
        )
    };
    for (topic, payload) in [
        raw("pause", "{not json"),
        raw("stop", r#"{"command":"stop"}"#),
        raw("pause", r#"{"command":"cancel","run_id":"abc-1"}"#),
        raw("limit", r#"{"command":"limit","jobs":0}"#),
        (
            control_topic("acme", "api", "pause"),
            br#"{"command":"pause"}"#.to_vec(),
        ),
    ] {
        operator
            .publish(&topic, payload, Qos::AtLeastOnce)
            .await
            .unwrap();
    }
    // The last one marks the end: anything refused above would have come before it.
    let last = Control::Limit { jobs: 2 };
    send_control(operator.as_ref(), "acme", "web", &last)
        .await
        .unwrap();

    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let control = tokio::time::timeout(PATIENCE, commands.recv())
            .await
            .expect("a control command within the patience")
            .expect("the control channel stays open");
        got.push(control);
    }
    let mut want = sent.to_vec();
    want.push(last);
    assert_eq!(got, want);
    assert!(commands.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_control_commands_round_trip() {
    commands_round_trip(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_control_commands_round_trip() {
    commands_round_trip(Kind::Nats).await;
}
