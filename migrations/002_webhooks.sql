-- Webhooks (issue 5): tenants' endpoints, one delivery row per (endpoint, event), and every attempt.

-- kind 'endpoint': a subscription registered through POST /v1/webhooks.
-- kind 'callback': the tenant's channel for one-off callbacks (POST /v1/anchor's callback_url):
-- no URL of its own (each delivery carries one), but a secret, deliveries and replay like any endpoint.
CREATE TABLE webhook_endpoints (
  id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq                       bigint GENERATED ALWAYS AS IDENTITY,
  tenant_id                 uuid NOT NULL REFERENCES tenants(id),
  kind                      text NOT NULL DEFAULT 'endpoint' CHECK (kind IN ('endpoint', 'callback')),
  url                       text,
  description               text,
  events                    text[] NOT NULL,
  -- Stored as given to the tenant: HMAC signing needs the secret itself, not a hash of it.
  secret                    text NOT NULL,
  -- During a rotation the previous secret still signs (a second signature) until it expires.
  previous_secret           text,
  previous_expires_at       timestamptz,
  status                    text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
  disabled_reason           text,
  disabled_at               timestamptz,
  created_by                text,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  deleted_at                timestamptz,
  CHECK (kind = 'callback' OR url IS NOT NULL)
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, seq) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX webhook_endpoints_one_callback ON webhook_endpoints (tenant_id) WHERE kind = 'callback' AND deleted_at IS NULL;

-- status: pending (due at next_at, or leased to a worker until next_at while lease_token is set),
-- succeeded, dead (attempts used up, 410 Gone, or a refused URL; replayable), cancelled (endpoint deleted).
CREATE TABLE webhook_deliveries (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq               bigint GENERATED ALWAYS AS IDENTITY,
  endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints(id),
  tenant_id         uuid NOT NULL,
  -- The Standard Webhooks message id: the same on every attempt and replay.
  webhook_id        text NOT NULL,
  event_type        text NOT NULL,
  -- The outbox event it came from (null for test deliveries).
  event_id          bigint,
  -- Set for callbacks; endpoint deliveries go to the endpoint's current URL.
  url               text,
  payload           text NOT NULL,
  status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead', 'cancelled')),
  -- attempts: every attempt ever; cycle_attempts: since creation or the last replay (drives the schedule).
  attempts          integer NOT NULL DEFAULT 0,
  cycle_attempts    integer NOT NULL DEFAULT 0,
  next_at           timestamptz NOT NULL DEFAULT now(),
  lease_token       uuid,
  leased_by         text,
  last_status       integer,
  last_error        text,
  last_latency_ms   double precision,
  last_attempt_at   timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  delivered_at      timestamptz
);
-- One delivery per endpoint per event: a fan-out run twice cannot send an event twice.
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (created_at) WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id     uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  attempt         integer NOT NULL,
  at              timestamptz NOT NULL DEFAULT now(),
  url             text,
  address         text,
  response_status integer,
  latency_ms      double precision,
  error           text,
  response_body   text,
  node            text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
