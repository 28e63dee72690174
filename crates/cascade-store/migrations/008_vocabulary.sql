-- One vocabulary (DESIGN §6): server workers and the Argo watcher wrote `completed` for
-- a run or task that succeeded, local runs `succeeded`. Every surface says `succeeded`
-- now; the rows written before say so too. (Other status columns — worker_queue,
-- events, routes, run_origins, commit_statuses — have words of their own, unchanged.)
UPDATE dag_runs SET status = 'succeeded' WHERE status = 'completed';
UPDATE task_executions SET status = 'succeeded' WHERE status = 'completed';
