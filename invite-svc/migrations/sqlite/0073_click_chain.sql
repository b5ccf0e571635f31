-- The same visitor's click before this one (the redirect's earlier `rm_click` cookie), so a
-- signup that names the newest click also counts the earlier ones (multi-touch attribution).
ALTER TABLE clicks ADD COLUMN previous_click_id TEXT NOT NULL DEFAULT '';
