-- Why the click id a signup named attributed to no one (altered, forged, expired, signed
-- with a retired key...), kept so a repeated signup answers exactly as the first did.
ALTER TABLE signups ADD COLUMN rejected_click TEXT NOT NULL DEFAULT '';
