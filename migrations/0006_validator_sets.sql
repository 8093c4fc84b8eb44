-- Every validator set the chain has named, by hash, so a light client that
-- meets a header signed by a new set can fetch it (and check its hash).
CREATE TABLE validator_sets (
    hash    BLOB PRIMARY KEY,
    encoded BLOB NOT NULL
) WITHOUT ROWID;
