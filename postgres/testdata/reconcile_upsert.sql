-- The baseline of issue 12: one plain single-statement reconcile upsert per
-- transaction, as a store without batching would send it. Each pgbench client
-- reconciles its own install (client_id) with a growing local count, so every
-- statement is a real write to an existing row after the first, like the
-- offload-bench reconcile workload. Run on a scratch database that has the
-- store's schema (the postgres package's migrations):
--
--   pgbench -n -c 64 -j 2 -T 10 -f reconcile_upsert.sql DBNAME
\set n random(1, 1000000000)
INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
VALUES ('pgbench-install-' || :client_id, 'breakdown', :n, now(), now())
ON CONFLICT (install_id, feature) DO UPDATE
SET count = GREATEST(usage_counts.count, EXCLUDED.count), updated_at = EXCLUDED.updated_at
RETURNING count;
