-- The text of each bot comment as the tracker last showed it: ticked boxes are found by
-- comparing an edit with it, and a human edit of a bot comment is noticed and re-rendered.
ALTER TABLE bot_comments ADD COLUMN body TEXT NOT NULL DEFAULT '';
