-- The append-only event history. `id` is the event's UUIDv7: a redelivered record changes nothing.
CREATE TABLE IF NOT EXISTS events (
    id              UUID PRIMARY KEY,
    stored_seq      BIGSERIAL NOT NULL,
    user_id         TEXT NOT NULL,
    device          TEXT NOT NULL,
    metric          TEXT NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    unit            TEXT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload         JSONB NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user_seq ON events (user_id, stored_seq);

-- The per-user projection: latest value and count per metric (ENABLE_EVENT_SOURCING).
CREATE TABLE IF NOT EXISTS user_metrics (
    user_id            TEXT NOT NULL,
    metric             TEXT NOT NULL,
    latest_value       DOUBLE PRECISION NOT NULL,
    unit               TEXT NOT NULL,
    latest_recorded_at TIMESTAMPTZ NOT NULL,
    event_count        BIGINT NOT NULL,
    PRIMARY KEY (user_id, metric)
);
