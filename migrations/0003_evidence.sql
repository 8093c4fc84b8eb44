-- Equivocations seen by this gateway's replica: a primary's two signed
-- pre-prepares for one view and height (itc_chain::pbft::Equivocation),
-- kept so they can be shown to anyone and put on chain.
CREATE TABLE evidence (
    offender BLOB    NOT NULL,
    view     INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    evidence BLOB    NOT NULL,
    PRIMARY KEY (offender, view, height)
) WITHOUT ROWID;
