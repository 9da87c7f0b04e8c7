-- Undo 0003_trace_bounds.up.sql: the values stay in traces.detail (the trace JSON).
ALTER TABLE traces
    DROP COLUMN IF EXISTS path_bound_s,
    DROP COLUMN IF EXISTS host_lag_ms;
