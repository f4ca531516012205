-- Replicas say they are alive here (Store::heartbeat), so those serving one deployment can
-- divide the tracker's write budget between them.
CREATE TABLE replicas (
    owner TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
