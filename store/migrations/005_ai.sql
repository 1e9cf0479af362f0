-- AI jobs: the job rows the API answers from, review findings, token usage and the answer cache.

CREATE TABLE ai_jobs (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    kind text NOT NULL CHECK (kind IN ('review', 'tests', 'debug', 'generate')),
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    input jsonb NOT NULL DEFAULT '{}'::jsonb,
    result jsonb,
    error jsonb,
    workflow_id text NOT NULL,
    applied_at timestamptz,
    applied_files jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_jobs_project ON ai_jobs (project_id, created_at DESC);

-- Review findings; every line they name existed in the file version they were made against.
CREATE TABLE ai_findings (
    id bigserial PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES ai_jobs (id) ON DELETE CASCADE,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path text NOT NULL,
    file_version bigint NOT NULL,
    line_start integer NOT NULL CHECK (line_start >= 1),
    line_end integer NOT NULL CHECK (line_end >= line_start),
    severity text NOT NULL CHECK (severity IN ('error', 'warning', 'info')),
    category text NOT NULL,
    message text NOT NULL,
    suggestion text,
    source text NOT NULL DEFAULT 'model'
);
CREATE INDEX ai_findings_job ON ai_findings (job_id, id);
CREATE INDEX ai_findings_project_path ON ai_findings (project_id, path);

-- One row per provider step; `call_key` (job, step) makes recording idempotent when Temporal
-- retries the activity after the answer was recorded. `cached` rows cost nothing.
CREATE TABLE ai_usage (
    id bigserial PRIMARY KEY,
    call_key text NOT NULL UNIQUE,
    job_id uuid REFERENCES ai_jobs (id) ON DELETE SET NULL,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    model text NOT NULL,
    calls integer NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_creation_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cost_usd numeric(14, 6) NOT NULL DEFAULT 0,
    cached boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_usage_project ON ai_usage (project_id);
CREATE INDEX ai_usage_user ON ai_usage (user_id);

-- Validated answers by the hash of everything that shaped them (provider, model, prompt, files).
CREATE TABLE ai_cache (
    input_hash text PRIMARY KEY,
    model text NOT NULL,
    answer jsonb NOT NULL,
    hits bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_hit_at timestamptz
);
