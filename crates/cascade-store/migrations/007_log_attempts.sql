-- The attempt of the task each log line was written in, so logs can show a header per
-- attempt (NULL for lines stored before this column existed).
ALTER TABLE task_logs ADD COLUMN attempt INTEGER;
