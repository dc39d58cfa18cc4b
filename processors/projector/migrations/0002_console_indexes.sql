-- Indexes for the web console (taskplane/console/queries.py): runs are listed newest
-- first and paginated by keyset on (submitted_ms, run_id), optionally per system or
-- status; the overview counts recent lease expirations and failed attempts.
CREATE INDEX runs_submitted ON runs (submitted_ms DESC, run_id DESC);
CREATE INDEX runs_system_submitted ON runs (system, submitted_ms DESC, run_id DESC);
CREATE INDEX runs_status_submitted ON runs (status, submitted_ms DESC, run_id DESC);
CREATE INDEX attempts_ended ON attempts (status, ended_ms) WHERE status IN ('expired', 'failed');
CREATE INDEX dead_letters_open_since ON dead_letters (status, dead_lettered_ms);
