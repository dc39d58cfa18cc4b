-- The read model: one row per run, task, attempt (lease epoch), tool call, dead letter
-- and breaker. Every time column is a log time (the event's timestamp), never now(),
-- so a rebuild from the log produces the same rows.
CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    system        text NOT NULL,
    version       text NOT NULL,
    status        text NOT NULL,
    input         text NOT NULL,
    idempotency_key text,
    submitted_ms  bigint NOT NULL,
    finished_ms   bigint,
    reason        text,
    tasks_total   integer NOT NULL,
    tasks_succeeded integer NOT NULL DEFAULT 0,
    rejections    integer NOT NULL DEFAULT 0,
    updated_ms    bigint NOT NULL
);
CREATE INDEX runs_system_status ON runs (system, status);

CREATE TABLE tasks (
    run_id        text NOT NULL REFERENCES runs (run_id),
    task          text NOT NULL,
    position      integer NOT NULL,
    dependencies  text[] NOT NULL,
    tools         text[] NOT NULL,
    status        text NOT NULL,
    attempt       integer NOT NULL DEFAULT 0,
    failures      integer NOT NULL DEFAULT 0,
    epoch         integer NOT NULL DEFAULT 0,
    holder        text,
    lease_expires_ms bigint,
    lease_renewals integer NOT NULL DEFAULT 0,
    retry_due_ms  bigint,
    blocked_by    text,
    last_error    text,
    output        text,
    first_ready_ms bigint,
    waiting_since_ms bigint,
    finished_ms   bigint,
    updated_ms    bigint NOT NULL,
    PRIMARY KEY (run_id, task)
);
CREATE INDEX tasks_status ON tasks (status);

CREATE TABLE attempts (
    run_id        text NOT NULL,
    task          text NOT NULL,
    epoch         integer NOT NULL,
    attempt       integer NOT NULL,
    worker_id     text NOT NULL,
    status        text NOT NULL,
    renewals      integer NOT NULL DEFAULT 0,
    error         text,
    kind          text,
    counted       boolean,
    started_ms    bigint NOT NULL,
    ended_ms      bigint,
    PRIMARY KEY (run_id, task, epoch)
);

CREATE TABLE tool_calls (
    run_id        text NOT NULL,
    task          text NOT NULL,
    epoch         integer NOT NULL,
    key           text NOT NULL,
    tool          text NOT NULL,
    call_index    integer NOT NULL,
    ok            boolean NOT NULL,
    result        text,
    error         text,
    at_ms         bigint NOT NULL,
    PRIMARY KEY (run_id, task, epoch, key)
);

CREATE TABLE dead_letters (
    run_id        text NOT NULL,
    task          text NOT NULL,
    system        text NOT NULL,
    status        text NOT NULL,  -- open | replayed
    attempts      integer NOT NULL,
    error         text NOT NULL,
    dead_lettered_ms bigint NOT NULL,
    times         integer NOT NULL DEFAULT 1,
    replayed_ms   bigint,
    replayed_by   text,
    PRIMARY KEY (run_id, task)
);
CREATE INDEX dead_letters_status ON dead_letters (status, system);

CREATE TABLE breakers (
    tool          text PRIMARY KEY,
    status        text NOT NULL,
    consecutive_failures integer NOT NULL,
    failure_threshold integer NOT NULL,
    cooldown_ms   bigint NOT NULL,
    opened_ms     bigint,
    half_open_due_ms bigint,
    transitions   integer NOT NULL,
    updated_ms    bigint NOT NULL
);

-- Next offset to read per source partition, written in the same transaction as the rows.
CREATE TABLE projector_offsets (
    topic         text NOT NULL,
    partition     integer NOT NULL,
    next_offset   bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
