-- Submitted DAGs and the per-scope work queue with leases (DESIGN §3).
CREATE TABLE dag_definitions (
    dag_id       TEXT PRIMARY KEY,
    tasks        TEXT NOT NULL,
    scope_type   TEXT NOT NULL,
    scope_id     TEXT,
    target_node  TEXT,
    priority     INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);
CREATE INDEX dag_definitions_scope ON dag_definitions (scope_type, scope_id);

CREATE TABLE worker_queue (
    run_id       TEXT PRIMARY KEY REFERENCES dag_runs (run_id) ON DELETE CASCADE,
    worker_id    TEXT NOT NULL,
    -- queued | leased | done
    status       TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 1,
    -- Unix milliseconds; a lease past this is free to reclaim.
    lease_until  INTEGER,
    -- Fencing token: bumped on every claim, so a worker whose lease was taken over
    -- cannot commit.
    lease_epoch  INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);
CREATE INDEX worker_queue_claim ON worker_queue (worker_id, status, priority DESC, created_at);
