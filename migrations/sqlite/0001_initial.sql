-- deploywatch schema, SQLite. Timestamps are Unix milliseconds (BIGINT) so both backends share
-- one set of queries; JSON documents are TEXT for the same reason.

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    state            TEXT NOT NULL,
    dedup_key        TEXT NOT NULL,
    -- Equal to dedup_key while the task is open (queued or claimed), NULL otherwise: the unique index
    -- on it is what guarantees one open task per dedup key, whatever the application does.
    open_key         TEXT,
    app              TEXT,
    context          TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    worker           TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    seen_count       BIGINT NOT NULL DEFAULT 1,
    alert_resolved_at BIGINT,
    closed_reason    TEXT,
    closed_at        BIGINT,
    result           TEXT
);
CREATE UNIQUE INDEX tasks_open_key ON tasks (open_key);
CREATE INDEX tasks_claim ON tasks (queue, state, priority, created_at);
CREATE INDEX tasks_dedup ON tasks (dedup_key, closed_at);

CREATE TABLE task_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (id),
    at      BIGINT NOT NULL,
    event   TEXT NOT NULL,
    worker  TEXT,
    detail  TEXT
);
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    body_sha256  TEXT NOT NULL UNIQUE,
    received_at  BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    seen_count   BIGINT NOT NULL DEFAULT 1,
    receiver     TEXT NOT NULL,
    status       TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    alert_count  BIGINT NOT NULL,
    body         TEXT NOT NULL
);

CREATE TABLE alerts (
    fingerprint  TEXT PRIMARY KEY,
    alertname    TEXT NOT NULL,
    app          TEXT,
    status       TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    resolved_at  BIGINT,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    seen_count   BIGINT NOT NULL DEFAULT 1,
    labels       TEXT NOT NULL,
    annotations  TEXT NOT NULL
);

CREATE TABLE deployment_outcomes (
    deployment_id     TEXT PRIMARY KEY,
    app               TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    duration_seconds  REAL,
    lead_time_seconds REAL,
    recovery_seconds  REAL,
    excluded_from_dora BIGINT NOT NULL DEFAULT 0,
    rollback          BIGINT NOT NULL DEFAULT 0,
    ended_at          BIGINT NOT NULL,
    counted_at        BIGINT NOT NULL
);
CREATE INDEX deployment_outcomes_app ON deployment_outcomes (app, ended_at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    notifier        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
