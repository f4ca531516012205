-- rollgate on PostgreSQL: the same tables as the SQLite store (see migrations/sqlite), in one
-- step. Times are unix milliseconds (BIGINT) in both stores, so the code reads them alike.

-- The durable inbox: a delivery is acknowledged only after its row is committed here. The head
-- event of an issue is leased to one worker of one replica at a time.
CREATE TABLE inbox (
    id              BIGSERIAL PRIMARY KEY,               -- arrival order
    tracker         TEXT    NOT NULL,
    delivery_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    issue_key       TEXT    NOT NULL,
    event           TEXT    NOT NULL,                    -- the normalized Event as JSON
    received_at     BIGINT  NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (tracker, delivery_id)
);
CREATE INDEX inbox_pending ON inbox (issue_key, id) WHERE status = 'pending';
CREATE INDEX inbox_pending_order ON inbox (id) WHERE status = 'pending';
CREATE INDEX inbox_dead ON inbox (id) WHERE status = 'dead';

CREATE TABLE issues (
    issue_key  TEXT PRIMARY KEY,
    snapshot   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE bot_comments (
    issue_key  TEXT   NOT NULL,
    tag        TEXT   NOT NULL,
    comment_id BIGINT NOT NULL,
    body_hash  TEXT   NOT NULL,
    body       TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (issue_key, tag)
);

CREATE TABLE history (
    id        BIGSERIAL PRIMARY KEY,
    issue_key TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    field     TEXT   NOT NULL,
    old_value TEXT,
    new_value TEXT,
    actor     TEXT   NOT NULL,
    source    TEXT   NOT NULL,
    delivery  TEXT
);
CREATE INDEX history_issue ON history (issue_key, at, id);
CREATE INDEX history_field_at ON history (field, at);

CREATE TABLE audit (
    id             BIGSERIAL PRIMARY KEY,
    tracker        TEXT    NOT NULL,
    delivery_id    TEXT    NOT NULL,
    issue_key      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    policy_version TEXT    NOT NULL,
    decision       TEXT    NOT NULL,
    effects        TEXT    NOT NULL,
    dry_run        BOOLEAN NOT NULL,
    attempt        INTEGER NOT NULL,
    eval_us        BIGINT  NOT NULL,
    apply_ms       BIGINT  NOT NULL,
    total_ms       BIGINT  NOT NULL,
    processed_at   BIGINT  NOT NULL,
    UNIQUE (tracker, delivery_id)
);
CREATE INDEX audit_issue ON audit (issue_key, id);

CREATE TABLE timers (
    issue_key TEXT   NOT NULL,
    purpose   TEXT   NOT NULL,
    due_at    BIGINT NOT NULL,
    fired_at  BIGINT,
    PRIMARY KEY (issue_key, purpose)
);
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

CREATE TABLE jobs (
    name        TEXT   NOT NULL,
    period      TEXT   NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('running', 'done')),
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    result      TEXT,
    PRIMARY KEY (name, period)
);

CREATE TABLE effect_ledger (
    inbox_id     BIGINT NOT NULL,
    purpose      TEXT   NOT NULL,
    content_hash TEXT   NOT NULL,
    result       TEXT,
    applied_at   BIGINT NOT NULL,
    PRIMARY KEY (inbox_id, purpose, content_hash)
);
