-- Factory at production scale: resumable uploads, registration progress, recalls, voided and
-- replacement tags.

-- Registration progress. While a batch registers, its products go in through one long transaction
-- that nobody else can see into; progress is written beside it, once a second, from another
-- connection, to this table rather than to the batches row (each insert's foreign-key check reads
-- that row, and rewriting it every second would slow every check). `at` is also the heartbeat that
-- keeps another node from taking over a batch still being worked on.
ALTER TABLE batches ADD COLUMN started_at timestamptz;
CREATE TABLE batch_progress (
  batch_id     uuid PRIMARY KEY REFERENCES batches(id) ON DELETE CASCADE,
  phase        text NOT NULL,
  done         integer NOT NULL DEFAULT 0,
  -- A CSV's row count is known only once read through: meanwhile, how many of its bytes are read.
  bytes_done   bigint,
  bytes_total  bigint,
  at           timestamptz NOT NULL DEFAULT now()
);

-- Files on their way to becoming a batch: resumable uploads (POST/PUT /v1/uploads) and CSV bodies
-- POSTed to /v1/batches, spooled while they are validated. The bytes live in upload_chunks, in the
-- database rather than on a node's disk, so that consecutive PUTs of one upload may land on
-- different factory nodes and registration may run on any of them.
CREATE TABLE uploads (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id       uuid NOT NULL REFERENCES tenants(id),
  kind            text NOT NULL CHECK (kind IN ('upload', 'stream')),
  created_by      text,
  name            text,
  market_regions  text[] NOT NULL DEFAULT '{}',
  content_type    text NOT NULL,
  size            bigint,
  sha256          text,
  received        bigint NOT NULL DEFAULT 0,
  status          text NOT NULL CHECK (status IN ('receiving', 'completed', 'failed', 'cancelled', 'expired')),
  batch_id        uuid REFERENCES batches(id),
  error           jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz,
  expires_at      timestamptz NOT NULL
);
CREATE INDEX uploads_tenant ON uploads (tenant_id, created_at, id);
CREATE INDEX uploads_expiring ON uploads (expires_at) WHERE status = 'receiving';

CREATE TABLE upload_chunks (
  upload_id  uuid NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
  "offset"   bigint NOT NULL,
  data       bytea NOT NULL,
  PRIMARY KEY (upload_id, "offset")
);
-- Stored as sent: compressing CSV on the way in would cost more time than the disk it saves
-- (the chunks are deleted once the batch is registered).
ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Recalls, product or batch wide, and their withdrawal. products.recall_id names the recall that
-- put a product in 'recalled', so withdrawing it restores exactly those products.
CREATE TABLE recalls (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id),
  scope            text NOT NULL CHECK (scope IN ('product', 'batch')),
  product_id       uuid REFERENCES products(id),
  batch_id         uuid NOT NULL REFERENCES batches(id),
  reason           text NOT NULL,
  products         integer NOT NULL,
  created_by       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  withdrawn_at     timestamptz,
  withdrawn_by     text,
  withdraw_reason  text
);
CREATE INDEX recalls_tenant ON recalls (tenant_id, created_at, id);
CREATE INDEX recalls_product ON recalls (product_id) WHERE product_id IS NOT NULL;
CREATE INDEX recalls_batch ON recalls (batch_id);

ALTER TABLE products ADD COLUMN recall_id uuid;
CREATE INDEX products_recall ON products (recall_id) WHERE recall_id IS NOT NULL;

-- Tags other than a product's original one, and voided tags. A product's original tag is its own
-- id (the token signs it); a replacement tag is a new uuid signed the same way, so the old token
-- still verifies cryptographically but resolves to a void tag. products.tag_id is the tag printed
-- now (NULL: the original).
ALTER TABLE products ADD COLUMN tag_id uuid;
CREATE TABLE product_tags (
  tag_id       uuid PRIMARY KEY,
  product_id   uuid NOT NULL REFERENCES products(id),
  tenant_id    uuid NOT NULL REFERENCES tenants(id),
  token_kid    text NOT NULL,
  status       text NOT NULL CHECK (status IN ('active', 'void')),
  void_reason  text,
  voided_at    timestamptz,
  replaced_by  uuid,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_tags_product ON product_tags (product_id, created_at);

-- Every tag a token can name, with its product and whether it is void: the original tag of each
-- product unless a product_tags row says otherwise, plus every product_tags row. The scan path
-- resolves a token's uuid here (one index probe in each branch).
CREATE VIEW tags AS
  SELECT t.tag_id, t.product_id, t.status, t.token_kid FROM product_tags t
  UNION ALL
  SELECT p.id, p.id, 'active', p.token_kid FROM products p
   WHERE NOT EXISTS (SELECT 1 FROM product_tags t WHERE t.tag_id = p.id);
