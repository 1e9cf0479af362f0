-- The head of every live document: its latest revision and the token of the commit that wrote
-- it. A commit moves the head from the revision it was prepared on to its last one, in the
-- statement that writes its ops (store/collab.py), and writes nothing when the head has moved.
-- A commit sent while the one before it is still in flight names that one's token: waiting
-- for its row lock, it reads the row that commit left, so it is written only after, and only
-- if, the one before it was (collab/submit.py). Narrow and kept apart from the document's
-- snapshot so that moving it on every commit writes little; room on each page keeps those
-- updates in place.
CREATE TABLE collab_heads (
    document_id bigint PRIMARY KEY REFERENCES collab_documents (id) ON DELETE CASCADE,
    revision bigint NOT NULL,
    token bigint
) WITH (fillfactor = 50);

INSERT INTO collab_heads (document_id, revision)
SELECT d.id, greatest(d.snapshot_revision, coalesce(
    (SELECT max(o.revision) FROM collab_ops o WHERE o.document_id = d.id), 0))
FROM collab_documents d;

CREATE FUNCTION collab_heads_of_new_documents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collab_heads (document_id, revision) VALUES (NEW.id, 0);
    RETURN NULL;
END
$$;

CREATE TRIGGER collab_documents_head AFTER INSERT ON collab_documents
    FOR EACH ROW EXECUTE FUNCTION collab_heads_of_new_documents();
