-- Second factor (TOTP) per user, and the user's single-use recovery codes.

-- The TOTP secret must be readable by the server to check codes, so it is kept as is (base32),
-- like the password hash only in this table. confirmed_at NULL: enrolment begun, not confirmed
-- (no login asks for a code yet). last_used_step: the newest accepted TOTP time step; a code for
-- that step or an earlier one is refused, so an observed code cannot be replayed.
CREATE TABLE user_mfa (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret text NOT NULL,
    confirmed_at timestamptz,
    last_used_step bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of each recovery code is stored; used_at set means spent.
CREATE TABLE mfa_recovery_codes (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
