-- Durable timers: a policy asks to be woken for an issue at a time (one timer per purpose).
-- A due timer becomes an event in the inbox, in the same transaction that marks it fired,
-- so a restart or a second sweep never fires it twice.
CREATE TABLE timers (
    issue_key TEXT    NOT NULL,
    purpose   TEXT    NOT NULL,
    due_at    INTEGER NOT NULL,  -- unix ms
    fired_at  INTEGER,
    PRIMARY KEY (issue_key, purpose)
);
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

-- Periodic jobs: one row per job and period, inserted before the job runs, so each period
-- runs once whatever restarts or replicas happen.
CREATE TABLE jobs (
    name        TEXT    NOT NULL,
    period      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('running', 'done')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    result      TEXT,
    PRIMARY KEY (name, period)
);
