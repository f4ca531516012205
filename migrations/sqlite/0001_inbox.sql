-- The durable inbox: a delivery is acknowledged only after its row is committed here.
CREATE TABLE inbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order
    tracker         TEXT    NOT NULL,
    delivery_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    issue_key       TEXT    NOT NULL,
    event           TEXT    NOT NULL,                  -- the normalized Event as JSON
    received_at     INTEGER NOT NULL,                  -- unix ms
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,        -- unix ms
    last_error      TEXT,
    UNIQUE (tracker, delivery_id)
);
-- The worker asks for the oldest pending event of every issue.
CREATE INDEX inbox_pending ON inbox (issue_key, id) WHERE status = 'pending';
CREATE INDEX inbox_dead ON inbox (id) WHERE status = 'dead';

-- The store's view of each issue, kept from events and from rollgate's own effects.
CREATE TABLE issues (
    issue_key  TEXT PRIMARY KEY,
    snapshot   TEXT    NOT NULL,  -- IssueSnapshot as JSON
    updated_at INTEGER NOT NULL   -- the tracker's updated_at of the newest snapshot applied, unix ms
);

-- One bot comment per issue and purpose, found again by its hidden marker.
CREATE TABLE bot_comments (
    issue_key  TEXT    NOT NULL,
    tag        TEXT    NOT NULL,
    comment_id INTEGER NOT NULL,
    body_hash  TEXT    NOT NULL,
    PRIMARY KEY (issue_key, tag)
);

-- When each normalized field changed, and who changed it. Clocks and metrics read this.
CREATE TABLE history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_key TEXT    NOT NULL,
    at        INTEGER NOT NULL,   -- the tracker's time of the change, unix ms
    field     TEXT    NOT NULL,
    old_value TEXT,
    new_value TEXT,
    actor     TEXT    NOT NULL,
    source    TEXT    NOT NULL,   -- tracker | rollgate | policy
    delivery  TEXT
);
CREATE INDEX history_issue ON history (issue_key, at, id);

-- What rollgate decided and did for every delivery.
CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tracker        TEXT    NOT NULL,
    delivery_id    TEXT    NOT NULL,
    issue_key      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    policy_version TEXT    NOT NULL,
    decision       TEXT    NOT NULL,  -- JSON
    effects        TEXT    NOT NULL,  -- JSON: each effect with its result
    dry_run        INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    eval_us        INTEGER NOT NULL,
    apply_ms       INTEGER NOT NULL,
    total_ms       INTEGER NOT NULL,
    processed_at   INTEGER NOT NULL,
    UNIQUE (tracker, delivery_id)
);
CREATE INDEX audit_issue ON audit (issue_key, id);
