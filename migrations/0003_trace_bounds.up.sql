-- Two per-operation figures our engine's servers add to every trace, as columns beside the
-- other trace columns (the JSON stays in `detail`):
--   host_lag_ms  — the largest event-loop lag (milliseconds) the process that timed the
--                  operation saw while it ran: a large one means the timing is suspect;
--   path_bound_s — the latency model's lower bound (seconds) for the path the operation
--                  took; only on a latency-emulated testbed.
-- Nullable: traces of other fleets (Go, js, py-libp2p) and rows written before this
-- migration have neither. Additive only: the four original tables stay unchanged.
ALTER TABLE traces
    ADD COLUMN host_lag_ms  DOUBLE PRECISION,
    ADD COLUMN path_bound_s DOUBLE PRECISION;

-- Rows stored before this migration whose trace already carried the fields (a server newer
-- than the scheduler's schema): filled from the JSON; anything but a JSON number stays NULL.
UPDATE traces
SET host_lag_ms  = CASE WHEN jsonb_typeof(detail -> 'host_lag_ms') = 'number'
                        THEN (detail ->> 'host_lag_ms')::double precision END,
    path_bound_s = CASE WHEN jsonb_typeof(detail -> 'path_bound_s') = 'number'
                        THEN (detail ->> 'path_bound_s')::double precision END
WHERE detail ? 'host_lag_ms' OR detail ? 'path_bound_s';
