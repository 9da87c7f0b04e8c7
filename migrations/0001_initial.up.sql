-- The original parsec tables, exactly as its analysis queries expect them (interface.md,
-- "Database"), plus `measurements`, our per-operation record.
--
-- No BEGIN/COMMIT here: parsec.store.migrations runs every file in its own transaction
-- and records it in schema_migrations in that same transaction.

CREATE TABLE schedulers_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    fleets       TEXT[]      NOT NULL,
    dependencies JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,

    PRIMARY KEY (id)
);

CREATE TABLE nodes_ecs
(
    id             INT GENERATED ALWAYS AS IDENTITY,
    cpu            INT         NOT NULL,
    memory         INT         NOT NULL,
    peer_id        TEXT        NOT NULL,
    region         TEXT        NOT NULL,
    cmd            TEXT        NOT NULL,
    fleet          TEXT        NOT NULL,
    dependencies   JSONB       NOT NULL,
    ip_address     INET        NOT NULL,
    server_port    SMALLINT    NOT NULL,
    peer_port      SMALLINT    NOT NULL,
    last_heartbeat TIMESTAMPTZ,
    offline_since  TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,

    PRIMARY KEY (id)
);

CREATE TABLE provides_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    scheduler_id INT         NOT NULL,
    node_id      INT         NOT NULL,
    rt_size      INT         NOT NULL,
    duration     FLOAT       NOT NULL, -- seconds
    cid          TEXT        NOT NULL,
    error        TEXT,                 -- NULL on success
    step         TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_provides_ecs_scheduler_id
        FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id) ON DELETE CASCADE,
    CONSTRAINT fk_provides_ecs_node_id
        FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,

    PRIMARY KEY (id)
);

CREATE TABLE retrievals_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    scheduler_id INT         NOT NULL,
    node_id      INT         NOT NULL,
    rt_size      INT         NOT NULL,
    duration     FLOAT       NOT NULL, -- seconds
    cid          TEXT        NOT NULL,
    error        TEXT,                 -- NULL on success
    created_at   TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_retrievals_ecs_scheduler_id
        FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id) ON DELETE CASCADE,
    CONSTRAINT fk_retrievals_ecs_node_id
        FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,

    PRIMARY KEY (id)
);

CREATE INDEX idx_provides_ecs_created_at ON provides_ecs (created_at);
CREATE INDEX idx_retrievals_ecs_created_at ON retrievals_ecs (created_at);

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
