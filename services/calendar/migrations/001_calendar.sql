CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Active reservations: who holds which desk at which time. The exclusion constraint is the
-- backstop against two bookings on one desk-time, even with two allocators during a rebalance.
CREATE TABLE reservations (
    booking_id      text        PRIMARY KEY,
    location_id     text        NOT NULL,
    desk_id         text        NOT NULL,
    product_id      text        NOT NULL,
    during          tstzrange   NOT NULL,
    status          text        NOT NULL CHECK (status IN ('held', 'confirmed')),
    hold_expires_at timestamptz,
    language        text        NOT NULL DEFAULT 'nl',
    CONSTRAINT no_double_booking EXCLUDE USING gist (desk_id WITH =, during WITH &&)
);
CREATE INDEX reservations_location_during ON reservations USING gist (location_id, during);
CREATE INDEX reservations_hold ON reservations (hold_expires_at) WHERE status = 'held';

-- Freed desk-times kept back from the public for a while (anti-bot hold-back).
CREATE TABLE held_back (
    desk_id        text        NOT NULL,
    location_id    text        NOT NULL,
    during         tstzrange   NOT NULL,
    available_from timestamptz NOT NULL,
    PRIMARY KEY (desk_id, during)
);

-- Decisions taken, so a redelivered request gets the same answer and never a second desk.
CREATE TABLE decisions (
    booking_id  text        PRIMARY KEY,
    outcome     text        NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now()
);

-- Agenda projection: one row per booking, as the counter sees it now.
CREATE TABLE agenda (
    booking_id  text        PRIMARY KEY,
    location_id text        NOT NULL,
    day         date        NOT NULL,
    desk_id     text,
    product_id  text        NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    status      text        NOT NULL,
    given_name  text,
    family_name text,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX agenda_location_day ON agenda (location_id, day);

-- Every change of an agenda row, with the instant of the event: the agenda as of any past moment.
CREATE TABLE agenda_history (
    id          bigserial   PRIMARY KEY,
    booking_id  text        NOT NULL,
    location_id text        NOT NULL,
    day         date        NOT NULL,
    event_time  timestamptz NOT NULL,
    row_data    jsonb       NOT NULL
);
CREATE INDEX agenda_history_lookup ON agenda_history (location_id, day, event_time);
