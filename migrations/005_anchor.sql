-- Anchoring as a timestamping authority (issue 6): one period per interval cluster-wide, every
-- transaction signed for a period (replacements share its nonce), nonces that are never reused or
-- skipped, and a dead-letter table for periods whose transaction the chain kept refusing.

-- The wall-clock slot a period was opened in (ANCHOR_INTERVAL-aligned): at most one per slot
-- unless forced from god mode. Block hash and reorg count make a re-mined anchor visible.
ALTER TABLE periods ADD COLUMN slot_start timestamptz;
ALTER TABLE periods ADD COLUMN block_hash text;
ALTER TABLE periods ADD COLUMN reorgs integer NOT NULL DEFAULT 0;
ALTER TABLE periods ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE periods ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX periods_slot ON periods (slot_start);
CREATE INDEX periods_live ON periods (status) WHERE status <> 'final';

-- A nonce belongs to one unfinished period at a time (the nonce is written here, with the signed
-- transaction, before anything is sent): two periods can never be given the same nonce.
CREATE UNIQUE INDEX periods_live_nonce ON periods (chain_id, address, nonce) WHERE nonce IS NOT NULL AND status <> 'final';

-- Every transaction signed for a period, kept before it is broadcast so a restart sends exactly it
-- again instead of signing a new one. A replacement (stuck transaction) has the same nonce.
CREATE TABLE anchor_txs (
  tx_hash                   text PRIMARY KEY,
  period_id                 uuid NOT NULL REFERENCES periods(id),
  chain_id                  integer NOT NULL,
  address                   text NOT NULL,
  nonce                     integer NOT NULL,
  raw                       text NOT NULL,
  max_fee_per_gas           numeric(78, 0) NOT NULL,
  max_priority_fee_per_gas  numeric(78, 0) NOT NULL,
  -- signed: persisted, not yet accepted by a node; sent: accepted; mined: in the period's block;
  -- replaced: a sibling with the same nonce was mined; dropped: will never be sent again.
  status                    text NOT NULL CHECK (status IN ('signed', 'sent', 'mined', 'replaced', 'dropped')),
  kind                      text NOT NULL CHECK (kind IN ('first', 'replacement')),
  created_at                timestamptz NOT NULL DEFAULT now(),
  sent_at                   timestamptz,
  gas_used                  bigint
);
CREATE INDEX anchor_txs_period ON anchor_txs (period_id, created_at);

-- Periods whose transaction failed MAX_ATTEMPTS times in one cycle for a reason other than the RPC
-- being unreachable. POST /v1/anchor/:id/retry and god mode requeue them (requeued_at set).
CREATE TABLE anchor_dead_letters (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  period_id    uuid NOT NULL REFERENCES periods(id),
  reason       text NOT NULL,
  attempts     jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  requeued_at  timestamptz,
  requeued_by  text
);
CREATE UNIQUE INDEX anchor_dead_letters_open ON anchor_dead_letters (period_id) WHERE requeued_at IS NULL;
CREATE INDEX anchor_dead_letters_created ON anchor_dead_letters (created_at DESC, id DESC);
