-- The GitOps loop (DESIGN §1, §4): every event that reaches the orchestrator, how
-- dispatch chains are routed, commit statuses reported, and cron ticks fired.

-- Webhook deliveries, dispatches and cron ticks. (source, delivery_id) is unique, so a
-- delivery sent again (by the forge, or after a crash) is recognised for good, not only
-- inside NATS's two-minute window.
CREATE TABLE events (
    event_id     INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    -- push | tag | pull_request | repository_dispatch | workflow_dispatch | schedule | ping
    kind         TEXT NOT NULL,
    repo         TEXT,
    task_id      TEXT,
    event_type   TEXT,
    -- The normalised event (JSON).
    payload      TEXT NOT NULL,
    -- queued | processing | done | skipped | failed | dead
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- Why it was skipped or failed, or what it started.
    note         TEXT,
    received_at  TEXT NOT NULL,
    UNIQUE (source, delivery_id)
);
CREATE INDEX events_open ON events (event_id) WHERE status IN ('queued', 'processing');
CREATE INDEX events_task ON events (task_id, event_id) WHERE task_id IS NOT NULL;

-- Claim check: bodies too large for a NATS message wait here; the message names them.
CREATE TABLE event_bodies (
    body_id     TEXT PRIMARY KEY,
    body        BLOB NOT NULL,
    created_at  TEXT NOT NULL
);

-- Where a run came from, so its end can be reported (commit statuses, callbacks,
-- retries of a dispatch chain). Written before the run is queued (no foreign key), so
-- a run never exists without its origin; an origin whose run never came is ignored.
CREATE TABLE run_origins (
    run_id        TEXT PRIMARY KEY,
    event_id      INTEGER REFERENCES events (event_id),
    pipeline      TEXT NOT NULL,
    -- Commit statuses: forge, API base, repository (owner/name or project id), sha.
    status_target TEXT,
    task_id       TEXT,
    event_type    TEXT,
    retry_count   INTEGER NOT NULL DEFAULT 0,
    callback_url  TEXT,
    -- pending | reported
    outcome_state TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX run_origins_pending ON run_origins (run_id) WHERE outcome_state = 'pending';

-- Dispatch routing is idempotent per (task_id, event_type, pipeline).
CREATE TABLE routes (
    task_id      TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    pipeline     TEXT NOT NULL,
    run_id       TEXT,
    retry_count  INTEGER NOT NULL DEFAULT 0,
    -- running | succeeded | failed | retrying
    status       TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (task_id, event_type, pipeline)
);

-- Circuit breakers, one per route (event_type → pipeline).
CREATE TABLE breakers (
    route         TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds when it opened; NULL when closed.
    opened_at_ms  INTEGER
);

-- The commit statuses last reported, per run and context: only changes are sent.
CREATE TABLE commit_statuses (
    run_id       TEXT NOT NULL,
    context      TEXT NOT NULL,
    state        TEXT NOT NULL,
    description  TEXT NOT NULL,
    reported_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, context)
);

-- Cron ticks fired: a tick fires once, whatever restarts in between.
CREATE TABLE cron_ticks (
    schedule_key  TEXT NOT NULL,
    tick          TEXT NOT NULL,
    fired_at      TEXT NOT NULL,
    PRIMARY KEY (schedule_key, tick)
);
