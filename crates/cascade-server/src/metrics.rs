//! `GET /metrics` in the Prometheus text format, the metric names, and the tracing layer
//! that gives every request a span.
//!
//! The process-wide `metrics` recorder is installed on first use (a render or a
//! [`webhook`] count). What the store knows is read at scrape time, so the numbers are
//! the database's, whoever wrote them (the workers are other processes):
//!
//! | metric | type | labels | from |
//! |---|---|---|---|
//! | `cascade_runs` | gauge | `status` | `dag_runs`, all runs |
//! | `cascade_tasks` | gauge | `state` | `task_executions`, all tasks |
//! | `cascade_queue_depth` | gauge | — | runs queued and not yet claimed |
//! | `cascade_workers` | gauge | — | live worker processes of the pool |
//! | `cascade_webhooks_total` | counter | `forge`, `result` | [`webhook`], by the gateway |
//! | `cascade_telemetry_dropped_total` | counter | — | events the workers could not publish |
//! | `cascade_auth_failures_total` | counter | `reason` | requests refused by `auth.rs` |
//!
//! A label value that disappears from the store (no run is `running` any more) is set to
//! zero, not left at its last value.

use crate::api::App;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

pub const RUNS: &str = "cascade_runs";
pub const TASKS: &str = "cascade_tasks";
pub const QUEUE_DEPTH: &str = "cascade_queue_depth";
pub const WORKERS: &str = "cascade_workers";
pub const WEBHOOKS: &str = "cascade_webhooks_total";
pub const TELEMETRY_DROPPED: &str = "cascade_telemetry_dropped_total";

/// The recorder's handle; installs the recorder on first use. When another recorder was
/// installed first (a test harness), this one still renders what is set through it here.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be incomplete");
        }
        describe();
        handle
    })
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(RUNS, Unit::Count, "Runs in the store, by status");
    describe_gauge!(TASKS, Unit::Count, "Tasks in the store, by state");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Runs queued and not yet claimed");
    describe_gauge!(WORKERS, Unit::Count, "Live worker processes");
    describe_counter!(
        WEBHOOKS,
        Unit::Count,
        "Webhook deliveries, by forge and result"
    );
    describe_counter!(
        crate::auth::AUTH_FAILURES,
        Unit::Count,
        "API requests refused for want of a valid token, by reason"
    );
    describe_counter!(
        TELEMETRY_DROPPED,
        Unit::Count,
        "Telemetry events not published (broker down, slow or queue full)"
    );
}

/// Counts one webhook delivery: `forge` (`github`, `gitlab`, …) and `result` (`accepted`,
/// `duplicate`, `rejected`, …).
pub fn webhook(forge: &'static str, result: &'static str) {
    handle();
    ::metrics::counter!(WEBHOOKS, "forge" => forge, "result" => result).increment(1);
}

/// The label values each gauge had at the last scrape, so vanished ones go to zero.
#[derive(Debug, Default)]
struct Seen {
    runs: BTreeSet<String>,
    tasks: BTreeSet<String>,
}

fn seen() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(Mutex::default)
}

/// Sets `name{label=…}` from `values`; labels set before and absent now become zero.
fn set_gauges(
    name: &'static str,
    label: &'static str,
    values: &[(String, i64)],
    seen: &mut BTreeSet<String>,
) {
    let now: BTreeSet<String> = values.iter().map(|(v, _)| v.clone()).collect();
    for gone in seen.difference(&now) {
        ::metrics::gauge!(name, label => gone.clone()).set(0.0);
    }
    for (value, count) in values {
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts far below 2^52 are exact in f64"
        )]
        let count = *count as f64;
        ::metrics::gauge!(name, label => value.clone()).set(count);
    }
    *seen = now;
}

/// `GET /metrics`.
/// `GET /metrics` on the API listener: for admin tokens only.
pub async fn render_for(
    State(app): State<Arc<App>>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
) -> Response {
    if let Err(e) = who.require(cascade_store::Role::Admin) {
        return e.into_response();
    }
    render(State(app)).await
}

/// The metrics, to whoever asks: the `--metrics-listen` listener (loopback only).
pub async fn render(State(app): State<Arc<App>>) -> Response {
    let handle = handle();
    let reading = Arc::clone(&app);
    let read = tokio::task::spawn_blocking(move || {
        let reader = reading
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dropped = reader
            .path()
            .and_then(std::path::Path::parent)
            .map_or(0, crate::telemetry::dropped_total);
        reader.counts().map(|counts| (counts, dropped))
    })
    .await;
    match read {
        Ok(Ok((counts, dropped))) => {
            let mut seen = seen().lock().unwrap_or_else(PoisonError::into_inner);
            let seen = &mut *seen;
            set_gauges(RUNS, "status", &counts.runs, &mut seen.runs);
            set_gauges(TASKS, "state", &counts.tasks, &mut seen.tasks);
            let queued: i64 = counts.queued.iter().map(|(_, n)| n).sum();
            #[expect(
                clippy::cast_precision_loss,
                reason = "counts far below 2^52 are exact in f64"
            )]
            ::metrics::gauge!(QUEUE_DEPTH).set(queued as f64);
            ::metrics::counter!(TELEMETRY_DROPPED).absolute(dropped);
        }
        Ok(Err(error)) => tracing::warn!(%error, "cannot read the store for /metrics"),
        Err(error) => tracing::warn!(%error, "cannot read the store for /metrics"),
    }
    let workers = app.pool.as_ref().map_or(0, |p| p.workers().len());
    #[expect(
        clippy::cast_precision_loss,
        reason = "a handful of workers is exact in f64"
    )]
    ::metrics::gauge!(WORKERS).set(workers as f64);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// A span per request (method, path, status, latency in the logs).
pub fn trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
> {
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
        .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_results_are_counted_by_forge_and_result() {
        webhook("github", "accepted");
        webhook("github", "accepted");
        webhook("gitlab", "rejected");
        let text = handle().render();
        assert!(
            text.contains("# TYPE cascade_webhooks_total counter"),
            "{text}"
        );
        assert!(
            text.contains("cascade_webhooks_total{forge=\"github\",result=\"accepted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cascade_webhooks_total{forge=\"gitlab\",result=\"rejected\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_vanished_label_goes_to_zero() {
        // The recorder first: gauges set before it is installed go nowhere.
        handle();
        let mut seen = BTreeSet::new();
        set_gauges(
            "cascade_test_gauge",
            "status",
            &[("running".into(), 2)],
            &mut seen,
        );
        set_gauges(
            "cascade_test_gauge",
            "status",
            &[("done".into(), 3)],
            &mut seen,
        );
        let text = handle().render();
        assert!(
            text.contains("cascade_test_gauge{status=\"running\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("cascade_test_gauge{status=\"done\"} 3"),
            "{text}"
        );
    }
}
