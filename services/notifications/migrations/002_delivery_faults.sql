-- Issue 15: a message is given up only for a fault of its own (it cannot be built, a bug), never
-- for an outage of another part (booking, the catalogue, the mail server, the SMS gateway): those
-- retry forever with capped backoff. `attempts` counts every try; `faults` only those that count
-- towards giving up.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS faults integer NOT NULL DEFAULT 0;
-- Ops list every failed message, newest first.
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (finished_at DESC, id) WHERE status = 'failed';
