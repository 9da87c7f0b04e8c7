-- The schema the Go parsec (probe-lab/parsec, pkg/db/migrations) leaves at golang-migrate
-- version 6: the four tables of its first design (runs, nodes, retrievals, provides), kept
-- by its migration 000005, and the four *_ecs tables it uses today, columns in its order
-- (provides_ecs.step last: migration 000006 added it). Written from those facts, not copied.
--
-- parsec.store.migrations runs this file, in one transaction with golang-migrate's
-- bookkeeping row (6, false), only on a database the Go parsec has not migrated; every
-- statement is IF NOT EXISTS so a database our older releases created (the *_ecs tables
-- already there, provides_ecs.step before created_at) is completed, not rejected.

CREATE TABLE IF NOT EXISTS runs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    dependencies JSONB       NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ CHECK ( finished_at > started_at ),
    updated_at   TIMESTAMPTZ NOT NULL CHECK ( updated_at >= created_at ),
    created_at   TIMESTAMPTZ NOT NULL,

    PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS nodes
(
    id            INT GENERATED ALWAYS AS IDENTITY,
    peer_id       TEXT        NOT NULL,
    run_id        INT         NOT NULL,
    region        TEXT        NOT NULL,
    instance_type TEXT        NOT NULL,
    dependencies  JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_nodes_run_id FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE SET NULL,

    PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS retrievals
(
    id         INT GENERATED ALWAYS AS IDENTITY,
    node_id    INT         NOT NULL,
    rt_size    INT         NOT NULL,
    duration   FLOAT       NOT NULL,
    cid        TEXT        NOT NULL,
    error      TEXT,
    created_at TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_retrievals_node FOREIGN KEY (node_id) REFERENCES nodes (id),

    PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS idx_retrievals_created_at ON retrievals (created_at);

CREATE TABLE IF NOT EXISTS provides
(
    id         INT GENERATED ALWAYS AS IDENTITY,
    node_id    INT         NOT NULL,
    rt_size    INT         NOT NULL,
    duration   FLOAT       NOT NULL,
    cid        TEXT        NOT NULL,
    error      TEXT,
    created_at TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_provides_node FOREIGN KEY (node_id) REFERENCES nodes (id),

    PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS idx_provides_created_at ON provides (created_at);

CREATE TABLE IF NOT EXISTS schedulers_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    fleets       TEXT[]      NOT NULL,
    dependencies JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,

    PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS nodes_ecs
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

CREATE TABLE IF NOT EXISTS retrievals_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    scheduler_id INT         NOT NULL,
    node_id      INT         NOT NULL,
    rt_size      INT         NOT NULL,
    duration     FLOAT       NOT NULL, -- seconds
    cid          TEXT        NOT NULL,
    error        TEXT,                 -- NULL on success
    created_at   TIMESTAMPTZ NOT NULL,

    CONSTRAINT fk_retrievals_ecs_node_id
        FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,
    CONSTRAINT fk_retrievals_ecs_scheduler_id
        FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id) ON DELETE CASCADE,

    PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS provides_ecs
(
    id           INT GENERATED ALWAYS AS IDENTITY,
    scheduler_id INT         NOT NULL,
    node_id      INT         NOT NULL,
    rt_size      INT         NOT NULL,
    duration     FLOAT       NOT NULL, -- seconds
    cid          TEXT        NOT NULL,
    error        TEXT,                 -- NULL on success
    created_at   TIMESTAMPTZ NOT NULL,
    step         TEXT        NOT NULL, -- 'provide' (DHT) or 'availability' (cid.contact)

    CONSTRAINT fk_provides_ecs_node_id
        FOREIGN KEY (node_id) REFERENCES nodes_ecs (id) ON DELETE CASCADE,
    CONSTRAINT fk_provides_ecs_scheduler_id
        FOREIGN KEY (scheduler_id) REFERENCES schedulers_ecs (id) ON DELETE CASCADE,

    PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS idx_provides_ecs_created_at ON provides_ecs (created_at);
CREATE INDEX IF NOT EXISTS idx_retrievals_ecs_created_at ON retrievals_ecs (created_at);
