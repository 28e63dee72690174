//! The webhook gateway's core path without HTTP: signature check on the raw body,
//! normalisation, and the durable enqueue (the intake thread's `synchronous=FULL` group
//! commit, dedupe by delivery id), as `POST /hooks/github` runs it after axum has the
//! body. Beside it in the same run, interleaved round by round:
//!
//! - baseline: the same bytes stored by the same kind of writer thread with nothing
//!   else (one `INSERT` of the raw body, one FULL commit): the floor set by the disk;
//! - verify + normalise alone (no store): the CPU part;
//! - a bad signature: the `401` path.
//!
//! Bodies: the real GitHub `push.json` (7 KiB) and the same padded to 64 KiB, each
//! request with a new delivery id. Prints p50/p99 per case and the ratio of the core
//! path to the baseline. `benches/webhooks.py` is the whole-server measure.
//!
//! `cargo bench -p cascade-server --bench webhooks [-- ROUNDS]`
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark program: panics and prints are its interface"
)]

use axum::http::{HeaderMap, HeaderValue};
use cascade_git::forge::Forge;
use cascade_server::hooks::{HookSecrets, verified_event};
use cascade_server::inbox::{Accepted, Inbox};
use cascade_server::intake::Intake;
use cascade_store::Queue;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"bench-secret";
/// Requests per case per round; rounds alternate the cases.
const PER_ROUND: usize = 100;

fn headers(delivery: &str, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-github-event", HeaderValue::from_static("push"));
    h.insert(
        "x-github-delivery",
        HeaderValue::from_str(delivery).unwrap(),
    );
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&format!("sha256={signature}")).unwrap(),
    );
    h
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Samples {
    core: Vec<Duration>,
    baseline: Vec<Duration>,
    cpu: Vec<Duration>,
    bad: Vec<Duration>,
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let push = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/webhooks/github/push.json");
    let small = std::fs::read(&push).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&small).unwrap();
    doc["padding"] = serde_json::Value::String("x".repeat(64 * 1024 - small.len() - 32));
    let large = serde_json::to_vec(&doc).unwrap();
    let secrets = HookSecrets {
        server: Some(SECRET.to_vec()),
        repos: std::collections::HashMap::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inbox = Inbox::Local {
        intake: Intake::start(Queue::open_writer(&dir.path().join("hooks.db")).unwrap()),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    let floor = Intake::start(Queue::open_writer(&dir.path().join("floor.db")).unwrap());

    println!("{rounds} rounds x {PER_ROUND} requests per case, cases interleaved; p50 / p99 in ms");
    println!(
        "{:<8} {:>17} {:>17} {:>6} {:>17} {:>17}",
        "body", "verify+enqueue", "bare FULL commit", "ratio", "verify+normalise", "bad signature"
    );
    let mut n = 0u64;
    for (name, body) in [("7 KiB", &small), ("64 KiB", &large)] {
        let good = cascade_git::signature::sign(body, SECRET);
        let wrong = "0".repeat(64);
        let mut s = Samples::default();
        for _ in 0..rounds {
            for _ in 0..PER_ROUND {
                n += 1;
                let h = headers(&format!("bench-{n}"), &good);
                let start = Instant::now();
                let event = verified_event(Forge::GitHub, &h, body, &secrets).unwrap();
                let accepted = runtime.block_on(inbox.accept(event)).unwrap();
                s.core.push(start.elapsed());
                assert_eq!(accepted, Accepted::Queued);
            }
            for _ in 0..PER_ROUND {
                n += 1;
                let id = format!("bench-{n}");
                let start = Instant::now();
                runtime.block_on(floor.put_body(&id, body.clone())).unwrap();
                s.baseline.push(start.elapsed());
            }
            for _ in 0..PER_ROUND {
                n += 1;
                let h = headers(&format!("bench-{n}"), &good);
                let start = Instant::now();
                let event = verified_event(Forge::GitHub, &h, body, &secrets).unwrap();
                s.cpu.push(start.elapsed());
                std::hint::black_box(event);
            }
            for _ in 0..PER_ROUND {
                n += 1;
                let h = headers(&format!("bench-{n}"), &wrong);
                let start = Instant::now();
                let refused = verified_event(Forge::GitHub, &h, body, &secrets);
                s.bad.push(start.elapsed());
                assert!(refused.is_err());
            }
        }
        let cell = |v: &mut Vec<Duration>| {
            let p50 = percentile(v, 50);
            let p99 = percentile(v, 99);
            (format!("{:.3} / {:.3}", ms(p50), ms(p99)), p50)
        };
        let (core, core_p50) = cell(&mut s.core);
        let (baseline, base_p50) = cell(&mut s.baseline);
        let (cpu, _) = cell(&mut s.cpu);
        let (bad, _) = cell(&mut s.bad);
        println!(
            "{name:<8} {core:>17} {baseline:>17} {:>6.2} {cpu:>17} {bad:>17}",
            core_p50.as_secs_f64() / base_p50.as_secs_f64()
        );
    }
}
