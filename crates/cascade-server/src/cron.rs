//! Cron: pipelines with `on.schedule` in registered repositories fire from `serve` on
//! time, in their time zone (croner), and never twice for the same tick: a tick is
//! written to `cron_ticks` before its event is queued (and the event's delivery id is
//! the tick), so a restart, or two passes at once, cannot fire it again. Like GitHub,
//! ticks missed while the server was down are not made up.

use crate::error::chain;
use crate::inbox::Inbox;
use crate::incoming::{Incoming, Tick, schedule_key};
use crate::orchestrator::PipelineSource;
use crate::store_thread::StoreThread;
use cascade_spec::config::AdminConfig;
use cascade_store::Orchestration;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One schedule of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    repo: String,
    path: String,
    cron: String,
    timezone: Option<String>,
}

impl Entry {
    /// Stable across restarts and edits of other schedules.
    fn key(&self) -> String {
        schedule_key(&self.repo, &self.path, &self.cron, self.timezone.as_deref())
    }
}

/// Why a tick was not fired (the next pass tries again).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Store(#[from] cascade_store::StoreError),
    #[error(transparent)]
    Inbox(crate::inbox::InboxError),
}

/// The cron loop's state.
pub struct Cron {
    pub store: StoreThread<Orchestration>,
    pub inbox: Inbox,
    pub config: Arc<AdminConfig>,
    pub source: Arc<dyn PipelineSource>,
    /// How often pipeline files are read again for their schedules.
    pub refresh: Duration,
}

impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cron").finish_non_exhaustive()
    }
}

impl Cron {
    /// Reads every registered pipeline's schedules (blocking: it may fetch from git).
    fn entries(config: &AdminConfig, source: &dyn PipelineSource) -> Vec<Entry> {
        let mut out = Vec::new();
        for (name, repo) in &config.repositories {
            let text = match source.read(repo, &repo.default_branch, &repo.pipeline) {
                Ok(Some(f)) => f.text,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(repo = name, error = %chain(&e), "cannot read schedules");
                    continue;
                }
            };
            let Ok(pipeline) = cascade_spec::parse_pipeline(&repo.pipeline, &text) else {
                continue;
            };
            for s in &pipeline.on.schedule {
                out.push(Entry {
                    repo: name.clone(),
                    path: repo.pipeline.clone(),
                    cron: s.cron.clone(),
                    timezone: s.timezone.clone(),
                });
            }
        }
        out
    }

    /// Fires ticks as they come until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut next: HashMap<String, jiff::Timestamp> = HashMap::new();
        let mut read_at: Option<Instant> = None;
        loop {
            if read_at.is_none_or(|t| t.elapsed() >= self.refresh) {
                let (config, source) = (Arc::clone(&self.config), Arc::clone(&self.source));
                entries = crate::store_thread::blocking(move || Self::entries(&config, &*source))
                    .await
                    .unwrap_or_default();
                read_at = Some(Instant::now());
            }
            let now = jiff::Timestamp::now();
            for entry in &entries {
                let key = entry.key();
                let due = *next.entry(key.clone()).or_insert_with(|| {
                    cascade_spec::schedule::next_tick(&entry.cron, entry.timezone.as_deref(), now)
                        .unwrap_or(jiff::Timestamp::MAX)
                });
                if due > now {
                    continue;
                }
                if let Err(e) = self.fire(entry, &key, due).await {
                    tracing::warn!(
                        schedule = key,
                        error = %chain(&e),
                        "cannot fire a tick; trying again"
                    );
                    continue;
                }
                let after = cascade_spec::schedule::next_tick(
                    &entry.cron,
                    entry.timezone.as_deref(),
                    due.max(now),
                )
                .unwrap_or(jiff::Timestamp::MAX);
                next.insert(key, after);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn fire(
        &mut self,
        entry: &Entry,
        key: &str,
        tick: jiff::Timestamp,
    ) -> Result<(), TickError> {
        let tick_text = tick.to_string();
        let (schedule, at) = (key.to_owned(), tick_text.clone());
        let first = self
            .store
            .call(move |s| s.fire_tick(&schedule, &at))
            .await?;
        if !first {
            return Ok(());
        }
        tracing::info!(schedule = key, tick = tick_text, "cron tick");
        let tick = Incoming::Schedule(Tick {
            repo: entry.repo.clone(),
            pipeline: entry.path.clone(),
            cron: entry.cron.clone(),
            timezone: entry.timezone.clone(),
            tick: tick_text.clone(),
        });
        let accepted = self.inbox.accept(tick.stored()).await;
        if let Err(e) = accepted {
            // Not queued: let the next pass fire it again.
            let (schedule, at) = (key.to_owned(), tick_text.clone());
            let _ = self
                .store
                .call(move |s| s.unfire_tick(&schedule, &at))
                .await;
            return Err(TickError::Inbox(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Fetched;
    use crate::source::SourceError;
    use cascade_spec::config::Repository;

    /// The pipeline file of every repository, fixed (reading from git is tested in
    /// `cascade-git` and end to end; this tests the tick bookkeeping).
    struct Fixed(&'static str);

    impl PipelineSource for Fixed {
        fn read(&self, _: &Repository, _: &str, _: &str) -> Result<Option<Fetched>, SourceError> {
            Ok(Some(Fetched {
                text: self.0.to_owned(),
                sha: "0".repeat(40),
            }))
        }
        fn changed(&self, _: &Repository, _: &str, _: &str) -> Result<Vec<String>, SourceError> {
            Ok(Vec::new())
        }
    }

    fn cron(db: &std::path::Path) -> Cron {
        let config = AdminConfig::parse(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file:///nowhere\"\n",
        )
        .unwrap();
        Cron {
            store: StoreThread::start("test-cron", Orchestration::open(db).unwrap()).unwrap(),
            inbox: Inbox::Local {
                intake: crate::intake::Intake::start(cascade_store::Queue::open(db).unwrap()),
                wake: Arc::new(tokio::sync::Notify::new()),
            },
            config: Arc::new(config),
            source: Arc::new(Fixed(
                "name: nightly\non:\n  schedule:\n    - cron: \"0 3 * * *\"\n      timezone: Europe/Berlin\njobs: { a: { run: echo } }\n",
            )),
            refresh: Duration::from_mins(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_fires_once_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let mut first = cron(&db);
        let entries = Cron::entries(&first.config, &*first.source);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].timezone.as_deref(), Some("Europe/Berlin"));
        let key = entries[0].key();
        let tick: jiff::Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
        first.fire(&entries[0], &key, tick).await.unwrap();
        first.fire(&entries[0], &key, tick).await.unwrap();
        // A restarted server (new connections, new state) sees the same tick as fired.
        let mut second = cron(&db);
        second.fire(&entries[0], &key, tick).await.unwrap();
        let later: jiff::Timestamp = "2026-01-02T02:00:00Z".parse().unwrap();
        second.fire(&entries[0], &key, later).await.unwrap();
        let reader = cascade_store::Reader::open(&db).unwrap();
        let events = reader.events(None, 10).unwrap();
        assert_eq!(events.len(), 2, "one event per tick: {events:#?}");
        assert_eq!(events[0].kind, "schedule");
        assert_eq!(events[0].delivery_id, format!("{key}@2026-01-01T02:00:00Z"));
        let Incoming::Schedule(first) = Incoming::read(&events[0]).unwrap() else {
            panic!("a tick: {:?}", events[0].payload);
        };
        assert_eq!(
            (
                first.tick.as_str(),
                first.pipeline.as_str(),
                first.timezone.as_deref()
            ),
            ("2026-01-01T02:00:00Z", "ci.yaml", Some("Europe/Berlin"))
        );
    }
}
