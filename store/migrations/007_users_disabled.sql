-- An admin can disable an account: its tokens stop working at once (web/revocation.py) and its
-- refresh tokens are revoked in the same transaction (store/users.py). NULL: enabled.
-- Checked by primary key on every authenticated request (behind a one-second cache), so no
-- index of its own is needed.

ALTER TABLE users ADD COLUMN disabled_at timestamptz;
