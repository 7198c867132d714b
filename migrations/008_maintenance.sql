-- Scheduled maintenance (issue 8, mixins/maintenance.mixin.ts): the last run of every job, so that
-- a job runs once per interval cluster-wide whichever node's timer fires first, and an operator
-- can see what each run did (the admin service's retention job records its runs here too).
CREATE TABLE maintenance_runs (
  job          text PRIMARY KEY,
  node         text,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz,
  ok           boolean,
  result       jsonb,
  error        text
);

-- Expired Idempotency-Keys are found through their expiry instead of a scan of the whole table.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires ON idempotency_keys (expires_at);
