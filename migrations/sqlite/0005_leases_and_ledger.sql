-- Several workers (or replicas, on PostgreSQL) share the inbox: the head event of an issue is
-- leased to one worker until it finishes or the lease runs out (a crashed worker).
ALTER TABLE inbox ADD COLUMN lease_owner TEXT;
ALTER TABLE inbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0; -- unix ms
-- Claims walk the pending rows in arrival order.
CREATE INDEX inbox_pending_order ON inbox (id) WHERE status = 'pending';

-- The effect ledger: each tracker call an event's processing completed, recorded as soon as it
-- returns, so a retry after a crash skips what was already applied. Keyed by the inbox row
-- (one issue), the effect's purpose and its content.
CREATE TABLE effect_ledger (
    inbox_id     INTEGER NOT NULL,
    purpose      TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    result       TEXT,             -- what the call returned that later steps need (a comment id)
    applied_at   INTEGER NOT NULL, -- unix ms
    PRIMARY KEY (inbox_id, purpose, content_hash)
);
