-- Indexes for the web console (taskplane/console/queries.py): runs are listed newest
-- first and paginated by keyset on (submitted_ms, run_id), optionally per system or
-- status; the overview counts recent lease expirations and failed attempts.
CREATE INDEX runs_submitted ON runs (submitted_ms DESC, run_id DESC);
CREATE INDEX runs_system_submitted ON runs (system, submitted_ms DESC, run_id DESC);
CREATE INDEX runs_status_submitted ON runs (status, submitted_ms DESC, run_id DESC);
CREATE INDEX attempts_ended ON attempts (status, ended_ms) WHERE status IN ('expired', 'failed');
CREATE INDEX dead_letters_open_since ON dead_letters (status, dead_lettered_ms);
-- Search by run id prefix (LIKE 'abc%' needs the pattern operator class).
CREATE INDEX runs_run_id_prefix ON runs (run_id text_pattern_ops);
-- Search in run input (ILIKE '%text%'): a trigram index when pg_trgm can be installed;
-- without it the search scans, and nothing else changes.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
    CREATE INDEX runs_input_trgm ON runs USING gin (input public.gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): searching run input scans the runs table', SQLERRM;
END $$;
