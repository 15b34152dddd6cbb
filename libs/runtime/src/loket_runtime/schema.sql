-- Tables of the shared runtime, in every service's database.

CREATE TABLE IF NOT EXISTS events (
    global_position bigserial   PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- optimistic concurrency: two writers of one version collide here
    CONSTRAINT events_stream_version UNIQUE (stream_id, stream_version)
);

CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Wake the relay on commit (pg_notify delivers at commit, once per transaction and payload).
CREATE OR REPLACE FUNCTION loket_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('loket_outbox', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION loket_outbox_notify();

-- Records the relay could not publish (too large, refused by the broker, topic unknown to the
-- cluster), kept whole with the reason instead of holding up the records behind them.
CREATE TABLE IF NOT EXISTS outbox_parked (
    id          bigserial   PRIMARY KEY,
    outbox_id   bigint      NOT NULL,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    queued_at   timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL
);

CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE IF NOT EXISTS processed_events (
    consumer_group text        NOT NULL,
    event_id       text        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id             bigserial   PRIMARY KEY,
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    key            text,
    headers        jsonb       NOT NULL,
    value          bytea,
    error          text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at    timestamptz,
    UNIQUE (consumer_group, topic, partition, "offset")
);

-- A service's copy of the catalogue (see catalogue.py); unused by the catalogue service itself.
CREATE TABLE IF NOT EXISTS catalogue_view (
    kind text  NOT NULL,
    id   text  NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (kind, id)
);
