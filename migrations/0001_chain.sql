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
-- `seq` is height * 2^20 + index, so a block's rows are appended at the end
-- of the table: a few sequential pages per block.
CREATE TABLE transactions (
    seq  INTEGER PRIMARY KEY,
    hash BLOB    NOT NULL,
    tx   BLOB    NOT NULL
);

-- The lookup indexes below are derived from `transactions` by a background
-- indexer, in their own sqlite transactions, not in the block's: their
-- inserts land on random pages, and every page a commit touches is written
-- to the WAL, so keeping them on the commit path multiplied its cost as the
-- chain grew. Readers scan the few not-yet-indexed rows (seq > indexed_seq)
-- directly, so lookups are complete at all times. Keys are an id's first 8
-- bytes, big-endian (small entries, fewer pages); readers compare full ids.

-- Transactions by id.
CREATE TABLE transaction_ids (
    hash_key INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (hash_key, seq)
) WITHOUT ROWID;

-- Transactions by the accounts they concern (sender and counterparties).
CREATE TABLE account_transactions (
    account_key INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (account_key, seq)
) WITHOUT ROWID;

-- How far the indexer has got: every transaction with seq <= indexed_seq is
-- in both indexes.
CREATE TABLE indexer (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    indexed_seq INTEGER NOT NULL
);
INSERT INTO indexer (id, indexed_seq) VALUES (0, -1);

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
