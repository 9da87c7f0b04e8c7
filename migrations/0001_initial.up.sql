-- `measurements`, our per-operation record, beside the Go parsec's tables (interface.md,
-- "Database"). Those come first, from migrations/go/schema_v6.sql under golang-migrate's
-- bookkeeping (or from the Go parsec itself), so a Go binary and ours share one database.
--
-- No BEGIN/COMMIT here: parsec.store.migrations runs every file in its own transaction
-- and records it in parsec_migrations in that same transaction.

-- One row per provide or retrieval measurement, keyed by the scheduler's op_id so a batch
-- written twice (a retry after an outage) is stored once. row_id is the id of the matching
-- provides_ecs (kind 'provide') or retrievals_ecs (kind 'retrieval') row.
CREATE TABLE measurements
(
    op_id        UUID        NOT NULL,
    kind         TEXT        NOT NULL,
    row_id       INT         NOT NULL,
    scheduler_id INT         NOT NULL,
    node_id      INT         NOT NULL,
    fleet        TEXT        NOT NULL,
    region       TEXT        NOT NULL,
    round        INT         NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,

    CONSTRAINT chk_measurements_kind CHECK (kind IN ('provide', 'retrieval')),
    CONSTRAINT uq_measurements_kind_row_id UNIQUE (kind, row_id),
    CONSTRAINT fk_measurements_scheduler_id
        FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id) ON DELETE CASCADE,
    CONSTRAINT fk_measurements_node_id
        FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,

    PRIMARY KEY (op_id)
);

CREATE INDEX idx_measurements_created_at ON measurements (created_at);
