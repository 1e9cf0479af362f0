-- Real-time collaboration: live documents, their op log, chat.

-- A document is a file of a project being edited live. `snapshot` is the text at
-- `snapshot_revision`; the text at any later revision is the snapshot plus the ops after it.
-- `file_version` is the file version whose content equals the text at `checkpoint_revision`
-- (the last checkpoint, or the version the document was loaded from at revision 0).
CREATE TABLE collab_documents (
    id bigserial PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path text NOT NULL,
    revision bigint NOT NULL DEFAULT 0,
    base_version bigint NOT NULL,
    snapshot text NOT NULL,
    snapshot_revision bigint NOT NULL DEFAULT 0,
    checkpoint_revision bigint NOT NULL DEFAULT 0,
    file_version bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, path)
);

-- The serialisation point of every document: one row per revision, whichever API node wrote
-- it. `revision` is the revision the op became (the first op of a document is revision 1).
-- (document_id, client_key, seq) de-duplicates resubmits; client_key is "<user_id>/<client_id>"
-- so one user cannot suppress another's ops.
CREATE TABLE collab_ops (
    document_id bigint NOT NULL REFERENCES collab_documents (id) ON DELETE CASCADE,
    revision bigint NOT NULL CHECK (revision > 0),
    op jsonb NOT NULL,
    client_key text NOT NULL,
    seq bigint NOT NULL,
    user_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, revision)
);
CREATE UNIQUE INDEX collab_ops_client ON collab_ops (document_id, client_key, seq);

CREATE TABLE collab_chat (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    name text NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX collab_chat_project ON collab_chat (project_id, id DESC);
