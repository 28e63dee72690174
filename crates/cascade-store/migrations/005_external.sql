-- Runs carried out by another backend (Argo Workflows): which one, and where, so its
-- watcher can map what the cluster reports back to the run and its tasks.

-- NULL: this server's workers; `argo`: a Workflow on the cluster.
ALTER TABLE dag_runs ADD COLUMN backend TEXT;
-- Where the run is on that backend (`namespace/name` of the Workflow).
ALTER TABLE dag_runs ADD COLUMN external_ref TEXT;
CREATE INDEX dag_runs_external ON dag_runs (backend, status) WHERE backend IS NOT NULL;
