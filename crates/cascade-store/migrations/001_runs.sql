-- Runs of pipelines and DAGs, their tasks and their logs.
CREATE TABLE dag_runs (
    run_id       TEXT PRIMARY KEY,
    dag_id       TEXT NOT NULL,
    source       TEXT,
    trigger      TEXT NOT NULL,
    status       TEXT NOT NULL,
    version      INTEGER NOT NULL DEFAULT 0,
    passed       INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    pid          INTEGER,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    duration_ms  INTEGER
);
CREATE INDEX dag_runs_created ON dag_runs (created_at);

CREATE TABLE task_executions (
    run_id       TEXT NOT NULL REFERENCES dag_runs (run_id) ON DELETE CASCADE,
    task_id      TEXT NOT NULL,
    position     INTEGER NOT NULL DEFAULT 0,
    label        TEXT,
    status       TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    exit_code    INTEGER,
    output       TEXT,
    error        TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    duration_ms  INTEGER,
    PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;

CREATE TABLE task_logs (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    task_id  TEXT NOT NULL,
    stream   TEXT NOT NULL,
    line     TEXT NOT NULL,
    ts       TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX task_logs_task ON task_logs (run_id, task_id, seq);
