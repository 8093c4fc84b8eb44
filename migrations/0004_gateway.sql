-- The gateway's own records, next to the chain but not part of it: who
-- administers this gateway, and the groups and scenes its users keep.

-- The one-time claim code (its SHA-256 only) while the gateway is
-- unclaimed. Cleared when someone claims the gateway with it.
CREATE TABLE gateway_claim (
    id        INTEGER PRIMARY KEY CHECK (id = 0),
    code_hash BLOB    NOT NULL
);

-- Accounts that administer this gateway (permit join, consent to device
-- claims, see all devices).
CREATE TABLE gateway_admins (
    account  BLOB    PRIMARY KEY,
    added_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Groups of lights, each kept for the account that made it.
CREATE TABLE light_groups (
    id    INTEGER PRIMARY KEY,
    owner BLOB    NOT NULL,
    name  TEXT    NOT NULL
);
CREATE INDEX light_groups_by_owner ON light_groups (owner);

CREATE TABLE light_group_members (
    group_id INTEGER NOT NULL REFERENCES light_groups (id) ON DELETE CASCADE,
    device   TEXT    NOT NULL,
    PRIMARY KEY (group_id, device)
) WITHOUT ROWID;

-- Scenes: a group's lights with their states (JSON) when stored.
CREATE TABLE scenes (
    id       INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES light_groups (id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    states   TEXT    NOT NULL
);
