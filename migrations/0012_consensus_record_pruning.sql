-- The pruning rules of consensus_records, moved from the gateway's code
-- into triggers, so that a batch of records is one multi-row INSERT: one
-- statement, one round trip to sqlite's worker and one sync, which a
-- replica waits for before each PBFT message it sends. Triggers fire row by
-- row in insertion order, so a batch prunes exactly as its records would
-- one at a time.

-- A stable checkpoint makes the votes and certificates at or below it, and
-- older checkpoints, obsolete (Castro & Liskov §4.3).
CREATE TRIGGER consensus_records_stable AFTER INSERT ON consensus_records
WHEN NEW.kind = 'stable'
BEGIN
    DELETE FROM consensus_records
    WHERE (kind IN ('voted', 'prepared') AND height <= NEW.height)
       OR (kind = 'stable' AND height < NEW.height);
END;

-- Only the latest view record counts.
CREATE TRIGGER consensus_records_view AFTER INSERT ON consensus_records
WHEN NEW.kind = 'view'
BEGIN
    DELETE FROM consensus_records WHERE kind = 'view' AND seq < NEW.seq;
END;
