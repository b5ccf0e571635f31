-- Admins list parked sends newest id first (GET /v1/parked); they are few among many
-- invitations, so a partial index finds them without scanning the table.
CREATE INDEX invitations_parked ON invitations (id) WHERE parked_at IS NOT NULL;
