-- The trace context (W3C `traceparent`) of the request that wrote an outbox row, so the
-- workflow the relay starts continues that request's trace (vaporform/tracing.py).

ALTER TABLE outbox ADD COLUMN trace_context jsonb;
