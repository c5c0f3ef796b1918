-- PostgreSQL only (see migrations/postgres/0130): per-table autovacuum thresholds so that the
-- rows deleted by presence history retention are reclaimed after a bounded number of dead
-- tuples. SQLite needs nothing: the pages freed by a DELETE go to the free list and are reused
-- by the next inserts, so the file stays flat without any setting. This file keeps the two
-- migration lists in step.
SELECT 1;
