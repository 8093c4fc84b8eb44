-- The chain store (itc-gateway's SqliteStore). Every BLOB holding a chain
-- object is that object's canonical, versioned encoding (itc_chain::codec).

-- Headers with their commit certificates: all a light client needs.
CREATE TABLE headers (
    height      INTEGER PRIMARY KEY,
    hash        BLOB    NOT NULL UNIQUE,
    header      BLOB    NOT NULL,
    certificate BLOB,               -- NULL only for the genesis (height 0)
    time_ms     INTEGER NOT NULL,
    tx_count    INTEGER NOT NULL
);

-- Transactions in block order; a block's body is its rows here. The rowid
-- `seq` is height * 2^20 + index, so rows are appended in key order (cheap
-- B-tree inserts); the id is a separate unique index.
CREATE TABLE transactions (
    seq    INTEGER PRIMARY KEY,
    hash   BLOB    NOT NULL UNIQUE,
    height INTEGER NOT NULL REFERENCES headers(height),
    idx    INTEGER NOT NULL,
    tx     BLOB    NOT NULL
);

-- Transactions by the accounts they concern (sender and counterparties).
CREATE TABLE account_transactions (
    account BLOB    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;

-- The ledger state at the tip: encoded StateKey -> encoded StateValue. The
-- Merkle tree over it is rebuilt in memory on open and checked against the
-- tip header's state root.
CREATE TABLE state (
    key   BLOB PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- A queryable projection of the device entries of `state`, kept in the same
-- transaction.
CREATE TABLE devices (
    id            TEXT    PRIMARY KEY,
    device_key    BLOB    NOT NULL,
    kind          TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    registrar     BLOB    NOT NULL,
    owner         BLOB,
    registered_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX devices_by_owner ON devices (owner);
