-- Undo 0001_initial.up.sql: dependents first.
DROP TABLE IF EXISTS measurements;
DROP TABLE IF EXISTS retrievals_ecs;
DROP TABLE IF EXISTS provides_ecs;
DROP TABLE IF EXISTS nodes_ecs;
DROP TABLE IF EXISTS schedulers_ecs;
