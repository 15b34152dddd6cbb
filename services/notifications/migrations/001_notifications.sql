-- What notifications knows of each booking, from its events: no personal data (the booking
-- service owns contact details; we ask for them right before sending).
CREATE TABLE IF NOT EXISTS bookings (
    booking_id  text        PRIMARY KEY,
    location_id text        NOT NULL,
    product_id  text        NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz,
    language    text        NOT NULL,
    status      text        NOT NULL,
    sequence    integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every message, planned, being sent, sent or given up: the idempotency record.
-- A booking message is unique per (booking_id, kind, version); `dedupe_key` covers waitlist
-- messages too. Status: pending -> sending -> sent | failed; or skipped (no address, too late)
-- or cancelled (a reminder of a booking cancelled or moved).
CREATE TABLE IF NOT EXISTS deliveries (
    id              uuid        PRIMARY KEY,
    dedupe_key      text        NOT NULL UNIQUE,
    booking_id      text,
    subscription_id uuid,
    kind            text        NOT NULL,
    version         integer     NOT NULL DEFAULT 0,
    channel         text        NOT NULL CHECK (channel IN ('email', 'sms')),
    language        text        NOT NULL,
    context         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'cancelled')),
    due_at          timestamptz NOT NULL,
    not_after       timestamptz,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    lease_until     timestamptz,
    claimed_by      text,
    message_id      text,
    recipient       text,
    subject         text,
    payload         bytea,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    finished_at     timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_booking_kind_version
    ON deliveries (booking_id, kind, version) WHERE booking_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription_id) WHERE subscription_id IS NOT NULL;

-- Residents waiting for a free time: product, location (NULL = any) and a date range (Brussels days).
CREATE TABLE IF NOT EXISTS waitlist (
    id              uuid        PRIMARY KEY,
    product_id      text        NOT NULL,
    location_id     text,
    from_date       date        NOT NULL,
    to_date         date        NOT NULL,
    email           text        NOT NULL,
    language        text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    unsubscribed_at timestamptz,
    CHECK (from_date <= to_date)
);
CREATE INDEX IF NOT EXISTS waitlist_active ON waitlist (product_id, from_date, to_date, created_at)
    WHERE unsubscribed_at IS NULL;
