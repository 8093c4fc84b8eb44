-- The chain store's lookup indexes, in a file of their own beside the chain
-- database (itc-gateway's store/indexer.rs). They are derived from the
-- chain's `transactions` table by a background indexer with its own writer,
-- so indexing never holds the chain's writer (which block commits and the
-- replica's records wait for) and never syncs the chain's file. Written
-- with synchronous = NORMAL: a crash may lose the last batches, which are
-- indexed again from the watermark. Keys are an id's first 8 bytes,
-- big-endian (small entries, fewer pages); readers compare full ids.

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
-- in both indexes. `indexed_hash` is the id of the transaction at
-- indexed_seq: if the chain's row there has another id, the chain database
-- was replaced under this index, which is then rebuilt.
CREATE TABLE indexer (
    id           INTEGER PRIMARY KEY CHECK (id = 0),
    indexed_seq  INTEGER NOT NULL,
    indexed_hash BLOB
);
INSERT INTO indexer (id, indexed_seq, indexed_hash) VALUES (0, -1, NULL);
