-- A dead letter whose body was too large to copy whole names where the original is kept; one the
-- outbox relay parked (it could not be published) says so.
ALTER TABLE ops_dead_letters
    ADD COLUMN IF NOT EXISTS original_bytes integer,
    ADD COLUMN IF NOT EXISTS reference text,
    ADD COLUMN IF NOT EXISTS parked boolean NOT NULL DEFAULT false;
