-- A light client's store (itc-gateway light …): verified headers with their
-- commit certificates, and the validator sets that signed them. Nothing
-- else of the chain is kept.
CREATE TABLE light_headers (
    height      INTEGER PRIMARY KEY,
    hash        BLOB    NOT NULL UNIQUE,
    header      BLOB    NOT NULL,
    certificate BLOB               -- NULL for the trusted genesis
);

CREATE TABLE light_sets (
    hash BLOB PRIMARY KEY,
    "set" BLOB NOT NULL
) WITHOUT ROWID;
