-- The lookup indexes (transaction_ids, account_transactions and their
-- watermark) move to a database file of their own (migrations/index/), so
-- that indexing no longer holds this database's one writer nor syncs this
-- file. They are derived data: the indexer rebuilds them there.
DROP TABLE transaction_ids;
DROP TABLE account_transactions;
DROP TABLE indexer;
