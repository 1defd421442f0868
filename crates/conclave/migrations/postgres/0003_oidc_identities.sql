-- The PostgreSQL twin of ../sqlite/0003_oidc_identities.sql.
CREATE TABLE oidc_identities (
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    user_id      BIGINT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    email        TEXT,
    name         TEXT,
    created_at   BIGINT NOT NULL,
    last_sign_in BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
