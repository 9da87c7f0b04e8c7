-- Per-operation traces reported by servers (RPCs by type, hops, peers contacted, …),
-- one row per measurement that carried one. The four original tables stay unchanged.
CREATE TABLE traces
(
    op_id           UUID PRIMARY KEY REFERENCES measurements (op_id) ON DELETE CASCADE,
    rpc_total       INT,
    hops            INT,
    peers_contacted INT,
    failures        INT,
    strategy        TEXT,
    detail          JSONB NOT NULL
);
