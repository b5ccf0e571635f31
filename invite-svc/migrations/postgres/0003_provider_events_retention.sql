-- The retention sweep forgets provider event ids by age (PROVIDER_EVENT_RETENTION).
CREATE INDEX provider_events_by_received ON provider_events (received_at);
