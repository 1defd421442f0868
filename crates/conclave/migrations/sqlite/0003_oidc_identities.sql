-- Accounts that sign in through an OpenID Connect provider (crate::oidc).
-- An identity is the provider's issuer URL and its `sub` claim, never the
-- email address: an address can change or be reassigned, and two providers
-- may each have a user with the same `sub`. Email and name are the claims
-- of the latest sign-in, for display only.
CREATE TABLE oidc_identities (
    issuer       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    user_id      INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    email        TEXT,
    name         TEXT,
    created_at   INTEGER NOT NULL,
    last_sign_in INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
