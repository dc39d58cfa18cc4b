-- Governance (docs/governance.md): usage folded per run and task from the outcome events.
-- Money is integer micro-units here too; surfaces show decimal strings.
ALTER TABLE runs ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cost_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_micros BIGINT NOT NULL DEFAULT 0;
