-- The DAG side chain at this gateway: every transaction it took, in
-- arrival order (rowid), with where it stands. Confirmed history older
-- than the configured depth keeps its row (id, height, outcome) but drops
-- its body, so a status query still answers; its proof is gone with it.
CREATE TABLE dag_txs (
    id BLOB NOT NULL UNIQUE,
    tx BLOB,
    height INTEGER,
    applied INTEGER
);
CREATE INDEX dag_txs_height ON dag_txs (height) WHERE tx IS NOT NULL;

-- The last height whose anchors this gateway's tangle has confirmed.
CREATE TABLE dag_progress (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    height INTEGER NOT NULL
);
