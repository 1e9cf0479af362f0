-- The virtual file system: files, their versions, and the latest text for search.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE files (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path text NOT NULL,
    encoding text NOT NULL CHECK (encoding IN ('utf-8', 'binary')),
    language text,
    mode integer NOT NULL DEFAULT 420,  -- 0o644
    size bigint NOT NULL,
    sha256 text NOT NULL,
    version integer NOT NULL,
    -- The current text of a live UTF-8 file, kept here so search runs in PostgreSQL.
    content text,
    -- "size:mtime_ns" of the workspace copy as this system last wrote or read it: a scan skips
    -- files whose stat still matches instead of reading and hashing them.
    mirror_stat text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
-- One row per path, deleted or not: re-creating a deleted path continues its history.
CREATE UNIQUE INDEX files_project_path ON files (project_id, path);
CREATE INDEX files_project_path_prefix ON files (project_id, path text_pattern_ops)
    WHERE deleted_at IS NULL;
CREATE INDEX files_content_trgm ON files USING gin (content gin_trgm_ops)
    WHERE deleted_at IS NULL;

CREATE TABLE file_versions (
    file_id uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    version integer NOT NULL,
    path text NOT NULL,  -- where the file was when this version was made (moves keep history)
    sha256 text NOT NULL,
    size bigint NOT NULL,
    author_id uuid,
    author_kind text NOT NULL CHECK (author_kind IN ('user', 'container', 'ai', 'system')),
    message text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, version)
);
CREATE INDEX file_versions_sha256 ON file_versions (sha256);
