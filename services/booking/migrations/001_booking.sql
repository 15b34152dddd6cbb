-- Read model of the booking aggregates (updated in the same transaction as each append).
CREATE TABLE bookings (
    id              text        PRIMARY KEY,
    status          text        NOT NULL,
    product_id      text        NOT NULL,
    location_id     text        NOT NULL,
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    desk_id         text,
    hold_expires_at timestamptz,
    language        text        NOT NULL,
    given_name      text        NOT NULL,
    family_name     text        NOT NULL,
    person_key      text        NOT NULL,
    token_hash      bytea       NOT NULL,
    version         integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bookings_person ON bookings (person_key, product_id) WHERE status IN ('requested', 'held', 'confirmed');
CREATE INDEX bookings_location_start ON bookings (location_id, start_at);

-- Personal data beyond the name, encrypted with a key per person: deleting the key erases it
-- everywhere without rewriting a single event.
CREATE TABLE person_keys (
    person_key text  PRIMARY KEY,
    secret     bytea NOT NULL
);
CREATE TABLE booking_private (
    booking_id text  PRIMARY KEY REFERENCES bookings (id),
    person_key text  NOT NULL,
    ciphertext bytea NOT NULL
);

-- Idempotency-Key: the first request's body hash and its answer (encrypted: it holds the token).
CREATE TABLE idempotency_keys (
    key        text        PRIMARY KEY,
    body_hash  text        NOT NULL,
    booking_id text        NOT NULL,
    response   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
