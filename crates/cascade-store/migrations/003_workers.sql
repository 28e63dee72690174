-- Worker processes of the server tier, and what a queued run needs to be run by one.
-- Added columns are nullable, so databases of earlier versions stay readable.

-- The exact submission a run executes (a later submission of the same dag_id replaces
-- dag_definitions.tasks, not what an earlier queued run was given).
ALTER TABLE dag_runs ADD COLUMN definition TEXT;
-- Who ran it: the node and the worker process.
ALTER TABLE dag_runs ADD COLUMN node_id TEXT;
ALTER TABLE dag_runs ADD COLUMN worker_id TEXT;
-- Why a run failed before any task ran (bad definition, unknown secret or runner).
ALTER TABLE dag_runs ADD COLUMN error TEXT;
CREATE INDEX dag_runs_dag ON dag_runs (dag_id, created_at);

-- A row carries what a claim filters on, so claiming reads one table.
ALTER TABLE worker_queue ADD COLUMN scope TEXT;
ALTER TABLE worker_queue ADD COLUMN target_node TEXT;

CREATE TABLE workers (
    worker_id     TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    node_id       TEXT,
    pid           INTEGER NOT NULL,
    -- idle | busy | stopped
    status        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    -- Unix milliseconds of the last sign of life (claims and lease renewals).
    heartbeat_ms  INTEGER NOT NULL,
    runs_done     INTEGER NOT NULL DEFAULT 0,
    current_runs  INTEGER NOT NULL DEFAULT 0
);

-- The open part of the queue, small however many runs are done: what the pool and the
-- claims scan.
CREATE INDEX worker_queue_open ON worker_queue (worker_id, status) WHERE status != 'done';
