-- The catalogue's current state: one JSON document per entity (the latest event's payload).
CREATE TABLE catalogue_entities (
    kind       text        NOT NULL,
    id         text        NOT NULL,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);
