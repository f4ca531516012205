-- A change someone made on the tracker that a rule refused and rollgate reverted: kept in the
-- history with the rule that refused it, and skipped by clocks, reports and the state rules read.
ALTER TABLE history ADD COLUMN refused TEXT;

-- Comment revisions rollgate acted on (commands run, boxes read): a delivery of the same comment
-- and revision, whatever its delivery id (a replayed or doubled delivery), is not acted on again.
CREATE TABLE comment_revisions (
    issue_key  TEXT   NOT NULL,
    comment_id BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    PRIMARY KEY (issue_key, comment_id, revision)
);
