-- Group commit across ledger partitions: one call (one round trip, one commit) writes the pending
-- scans of every partition a node has, instead of one statement per partition. Expand-only: the
-- previous release's one-partition statement keeps working beside it.
--
-- A partition's entries are written only if its head row still holds the link they were chained
-- onto (old_seq, old_hash); the partitions written are returned, the caller re-chains the others.
-- Heads are locked in partition order first, so two nodes appending to overlapping partitions wait
-- for each other at most once and never deadlock.
CREATE OR REPLACE FUNCTION ledger_append_many(
  h_partition integer[], h_old_seq bigint[], h_old_hash text[], h_seq bigint[], h_hash text[],
  e_partition integer[], e_seq bigint[], e_prev text[], e_hash text[], e_entry text[], e_kind text[],
  e_id uuid[], e_tenant uuid[], e_product uuid[], e_batch uuid[], e_at timestamptz[], e_device text[],
  e_network text[], e_lat double precision[], e_lng double precision[], e_country text[],
  e_verdict text[], e_score integer[], e_factors text[], e_channel text[]
) RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
  ok integer[];
BEGIN
  PERFORM 1 FROM ledger_heads WHERE partition = ANY (h_partition) ORDER BY partition FOR UPDATE;
  WITH h AS (
    SELECT * FROM unnest(h_partition, h_old_seq, h_old_hash, h_seq, h_hash) AS h(partition, old_seq, old_hash, seq, hash)
  ), upd AS (
    UPDATE ledger_heads lh SET seq = h.seq, hash = h.hash FROM h
     WHERE lh.partition = h.partition AND lh.seq = h.old_seq AND lh.hash = h.old_hash
    RETURNING lh.partition
  )
  SELECT coalesce(array_agg(partition), '{}') INTO ok FROM upd;
  IF cardinality(ok) = 0 THEN
    RETURN ok;
  END IF;

  WITH t AS (
    SELECT * FROM unnest(e_partition, e_seq, e_prev, e_hash, e_entry, e_kind, e_id, e_tenant, e_product, e_batch, e_at, e_device,
                         e_network, e_lat, e_lng, e_country, e_verdict, e_score, e_factors, e_channel)
      AS t(partition, seq, prev, hash, entry, kind, id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors, channel)
     WHERE partition = ANY (ok)
  ), l AS (
    INSERT INTO ledger (partition, seq, prev_hash, hash, entry) SELECT partition, seq, prev, hash, entry::jsonb FROM t
  ), n AS (
    INSERT INTO scans (id, tenant_id, product_id, batch_id, at, device, network, lat, lng, country, verdict, score, factors, partition, seq, channel, located_at)
    SELECT id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors::jsonb, partition, seq, channel,
           CASE WHEN lat IS NULL THEN NULL ELSE at END
      FROM t WHERE kind = 'scan'
  )
  -- A location shared after the scan: its own ledger entry, and the scan row gains the location.
  UPDATE scans SET lat = t.lat, lng = t.lng, country = t.country, verdict = t.verdict, score = t.score, factors = t.factors::jsonb, located_at = t.at
    FROM t WHERE t.kind = 'location' AND scans.id = t.id;
  RETURN ok;
END
$$;
