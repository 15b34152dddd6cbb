-- The per-person rule ("one active booking per person and product") keys on the person, not on
-- the contact details: each booking keeps its person sealed (HMAC-SHA256 with the service secret
-- of the normalised name, birth date, national or BIS number, e-mail and phone; see
-- loket_booking.domain.rules.Person). NULL for bookings made before this migration: those are
-- matched by their old person_key until they are no longer active (at most the booking window).
ALTER TABLE bookings
    ADD COLUMN person_name     text,
    ADD COLUMN person_birth    text,
    ADD COLUMN person_national text,
    ADD COLUMN person_email    text,
    ADD COLUMN person_phone    text;

-- Every pair of bookings the rule may take for one person shares the name or the number.
CREATE INDEX bookings_person_name ON bookings (person_name, created_at) WHERE person_name IS NOT NULL;
CREATE INDEX bookings_person_national ON bookings (person_national, created_at) WHERE person_national IS NOT NULL;
