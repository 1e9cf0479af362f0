-- The audit log of every mutating action, admin controls of users (MFA required per user) and
-- per-user quotas. docs/admin.md describes all three.

-- audit_events (001) gains what an auditor asks about each action: what it acted on, how it
-- ended, and the request and client address it came from. event_key stays for the events that
-- may be recorded twice (an activity retried by Temporal); events recorded by the API in the
-- transaction of their action carry none (NULLs never conflict in a unique index).
ALTER TABLE audit_events
    ALTER COLUMN event_key DROP NOT NULL,
    ADD COLUMN target text,
    ADD COLUMN outcome text NOT NULL DEFAULT 'success'
        CHECK (outcome IN ('success', 'failure', 'denied')),
    ADD COLUMN request_id text,
    ADD COLUMN ip text;

-- Pages are read newest first, by (created_at, id), whole or filtered by one of these.
DROP INDEX audit_events_project;
CREATE INDEX audit_events_time ON audit_events (created_at DESC, id DESC);
CREATE INDEX audit_events_project ON audit_events (project_id, created_at DESC, id DESC)
    WHERE project_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor_id, created_at DESC, id DESC)
    WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_action ON audit_events (action, created_at DESC, id DESC);

-- Append-only, enforced here rather than by REVOKE: the API connects as the table's owner,
-- whom privileges do not bind, and a trigger binds every role. Statement-level, so even an
-- UPDATE or DELETE that matches no row is refused. Removing rows on purpose (retention) means
-- ALTER TABLE audit_events DISABLE TRIGGER ... by the owner, a visible, deliberate act.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- An admin can require MFA of one user, as VAPORFORM_REQUIRE_MFA does of everyone: without it
-- the user's tokens reach only the enrolment routes (web/second_factor.py).
ALTER TABLE users ADD COLUMN mfa_required boolean NOT NULL DEFAULT false;

-- Admins search users by email or name, anywhere in either.
CREATE INDEX users_search_trgm ON users
    USING gin ((lower(email) || ' ' || lower(name)) gin_trgm_ops);

-- Per-user quotas set by an admin; NULL (or no row) is the deployment's default: no limit for
-- containers and storage, VAPORFORM_AI_BUDGET_USER_USD for the AI budget.
CREATE TABLE user_quotas (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    containers_running integer CHECK (containers_running >= 0),
    storage_bytes bigint CHECK (storage_bytes >= 0),
    ai_budget_usd numeric(14, 6) CHECK (ai_budget_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- A user's storage is the sum over the projects they own (store/quotas.py).
CREATE INDEX projects_owner ON projects (owner_id);
