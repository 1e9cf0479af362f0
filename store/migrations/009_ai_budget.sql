-- Exact AI budgets. Before each model call its worst-case cost is reserved, under a lock per
-- project and per user, and admitted only if spent + reserved + estimate stays within both
-- budgets; the call's actual cost then replaces the reservation (store/ai_budget.py).
--
-- Usage outlives its project: deleting a project keeps its usage rows (project_id stays, with
-- no foreign key), so a user's spend never shrinks. A deleted job leaves job_id NULL, as before.

ALTER TABLE ai_usage DROP CONSTRAINT ai_usage_project_id_fkey;
CREATE INDEX ai_usage_job ON ai_usage (job_id);

-- Calls in flight. No foreign keys: a reservation is bookkeeping that ends with its call, and
-- one left by a crashed call stops counting at expires_at (or when its step is retried).
CREATE TABLE ai_reservations (
    call_key text PRIMARY KEY,
    job_id uuid,
    project_id uuid NOT NULL,
    user_id uuid,
    amount_usd numeric(14, 6) NOT NULL CHECK (amount_usd >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX ai_reservations_project ON ai_reservations (project_id, expires_at);
CREATE INDEX ai_reservations_user ON ai_reservations (user_id, expires_at);
CREATE INDEX ai_reservations_job ON ai_reservations (job_id);
