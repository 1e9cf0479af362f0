-- Transactional outbox: work for Temporal recorded in the same transaction as the change that
-- causes it, and started by a relay after commit. Nothing is lost when Temporal is down, and
-- requests never wait on it.

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id);
