-- The PBFT replica's write-ahead records (itc_chain::pbft::Record): its
-- views, votes, prepared certificates and stable checkpoints. A record is
-- durable before any message that depends on it is sent, and a restarted
-- replica is rebuilt from these rows plus the committed chain.
CREATE TABLE consensus_records (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind   TEXT    NOT NULL,   -- view | voted | prepared | stable
    height INTEGER,            -- the height a vote or certificate is for
    record BLOB    NOT NULL
);
