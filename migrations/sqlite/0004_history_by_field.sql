-- The monthly report reads a few fields across every issue for a span of months.
CREATE INDEX history_field_at ON history (field, at);
