-- MQTT logins. Passwords are never stored, only their SHA-256 under a
-- domain prefix. A device logs in as its device id; an integration by its
-- name and acts for `account` (chain state decides what it may do).
CREATE TABLE mqtt_users (
    username    TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    device      TEXT,
    account     BLOB,
    created_ms  INTEGER NOT NULL,
    CHECK ((device IS NULL) <> (account IS NULL))
) WITHOUT ROWID;

-- One-time setup codes: a new device's first login. `owner` becomes the
-- device's first owner through `consent` (their adoption signature for
-- this gateway).
CREATE TABLE mqtt_setup_codes (
    code_hash  BLOB PRIMARY KEY,
    owner      BLOB NOT NULL,
    consent    BLOB NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
) WITHOUT ROWID;
