-- Undo 0001_initial.up.sql. The Go parsec's tables stay: they are shared with Go binaries
-- and belong to golang-migrate's bookkeeping (schema_migrations), not to ours.
DROP TABLE IF EXISTS measurements;
