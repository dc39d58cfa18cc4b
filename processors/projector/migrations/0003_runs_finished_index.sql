-- Retention (`taskplane runs prune`): finds the oldest finished runs without a scan.
CREATE INDEX runs_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL;
