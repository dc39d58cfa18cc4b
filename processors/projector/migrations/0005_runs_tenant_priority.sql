-- Scheduling (docs/scheduling.md): the run's tenant and priority, shown by the console and
-- filtered on. Runs projected before keep '' and 0 (none), as their events carry.
ALTER TABLE runs ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;
CREATE INDEX runs_tenant ON runs (tenant, submitted_ms) WHERE tenant <> '';
