// Response schemas of the admin service (services/admin.service.ts): identity, users, tenants,
// audit, dashboard and analytics, privacy, god mode. Each mirrors a view function of the service
// (userView, tenantView, keyView…) field for field; /openapi.json publishes them.
import { ROLES } from "../admin-roles";
import { VERDICTS } from "../analytics";
import { FACTOR_NAMES } from "../risk";
import { RUNTIME_SETTINGS } from "../runtime-settings";
import { AnchorStatus, ANCHOR_STATUSES } from "./anchor";
import { scanFields } from "./scan";
import { ApiKey, BATCH_STATUSES, BatchRetried as FactoryBatchRetried, PRODUCT_STATUSES, RowError } from "./factory";
import { anyValue, arrayOf, bool, enumOf, freeObject, int, nullable, num, obj, str, strings, timestamp, uuid, JsonSchema } from "./common";

/** A factor as the scan ledger keeps it: those that contributed, without their values. */
const scanFactor = obj({ name: enumOf(FACTOR_NAMES), contribution: num }, { detail: str });

/** An anchor period's statuses are its batches' anchor statuses. */
const PERIOD_STATUSES = ANCHOR_STATUSES;
const countsOf = (keys: readonly string[]) => obj(Object.fromEntries(keys.map((k) => [k, int])));

// ---- Identity ---------------------------------------------------------------------------------

/** An RSA public key as published at /.well-known/jwks.json. */
export const Jwk = obj({ kty: { const: "RSA" }, n: str, e: str, kid: str, alg: { const: "RS256" }, use: { const: "sig" } });
export const Jwks = obj({ keys: arrayOf(Jwk) });

export const TokenPair = obj({
  access_token: { ...str, description: "RS256 JWT, sent as Authorization: Bearer." },
  token_type: { const: "Bearer" },
  expires_in: { ...int, description: "Seconds the access token is valid." },
  refresh_token: { ...str, description: "Single use: POST /v1/auth/refresh spends it for a new pair." },
});

export const ResetAccepted = obj({ status: { const: "accepted" }, message: str });
export const ResetConfirmed = obj({ status: { const: "ok" }, email: str });

// ---- Users and tenants ------------------------------------------------------------------------

export const User = obj({
  id: uuid,
  // Not format email: an erased account's address is a placeholder (erased+<id>@invalid).
  email: str,
  name: str,
  role: enumOf(ROLES),
  tenant_id: nullable(uuid),
  status: enumOf(["active", "disabled"]),
  invited: { ...bool, description: "An invitation is out and no password has been set yet." },
  locked_until: nullable(timestamp),
  last_login_at: nullable(timestamp),
  created_at: timestamp,
  updated_at: timestamp,
  disabled_at: nullable(timestamp),
});

const { properties: userProps } = User as { properties: Record<string, JsonSchema> };
export const Me = obj({ ...userProps, tenant: nullable(obj({ id: uuid, name: str, status: enumOf(["active", "suspended"]) })) });
export const UserUpdated = obj({ ...userProps, ignored_fields: { ...strings, description: "Fields of the request the caller may not set." } });
export const InviteSent = obj({ status: { const: "sent" }, user_id: uuid });

export const Tenant = obj({
  id: uuid,
  name: str,
  status: enumOf(["active", "suspended"]),
  suspended_at: nullable(timestamp),
  suspended_reason: nullable(str),
  created_at: timestamp,
  updated_at: timestamp,
});
const { properties: tenantProps } = Tenant as { properties: Record<string, JsonSchema> };
export const TenantWithCounts = obj({ ...tenantProps, counts: obj({ users: int, api_keys: int, batches: int, products: int }) });

/** A tenant's key as platform staff see it (never the secret): the factory's view, and who created it ("user:<id>", "key:<id>"). */
export const TenantApiKey = obj({ ...(ApiKey.properties as Record<string, JsonSchema>), created_by: nullable(str) });

// ---- Audit ------------------------------------------------------------------------------------

const auditFields = {
  seq: int,
  at: timestamp,
  actor_type: enumOf(["user", "key", "system", "anonymous"]),
  actor_id: nullable(str),
  role: nullable(str),
  tenant_id: nullable(uuid),
  action: str,
  target_type: nullable(str),
  target_id: nullable(str),
  request_id: nullable(str),
  network: nullable(str),
};
const hashedEntry = {
  entry: { ...freeObject, description: "The hashed entry itself (canonical JSON)." },
  prev_hash: str,
  hash: str,
};
/** lib/audit-export auditView: before/after lifted out of the entry for reading. */
export const AuditEntry = obj({ ...auditFields, before: anyValue, after: anyValue, ...hashedEntry });
/** lib/audit-export auditExportView: re-verifiable offline (before/after only inside `entry`). */
export const AuditExportEntry = obj({ ...auditFields, ...hashedEntry });

const chainLink = obj({ seq: int, hash: str });
export const AuditVerification = obj({
  ok: bool,
  count: int,
  head: nullable(chainLink),
  stored_head: nullable(chainLink),
  broken: nullable(
    // A broken link (lib/ledger ChainBroken) names its seq; a head mismatch has none.
    obj({ reason: enumOf(["gap", "fork", "bad_hash", "bad_prev", "head_mismatch"]), detail: str }, { seq: int }),
  ),
});

// ---- Privacy ----------------------------------------------------------------------------------

/**
 * One line of a tenant's export (application/x-ndjson): each line is one JSON object, its `type`
 * naming the section (tenantExportStream's columns, in section order).
 */
const line = (type: string, fields: Record<string, JsonSchema>) => obj({ type: { const: type }, ...fields });
export const TenantExportLine = {
  description: "The schema of each line (one JSON object per line).",
  oneOf: [
    line("tenant", { id: uuid, name: str, status: enumOf(["active", "suspended"]), settings: freeObject, created_at: timestamp, suspended_at: nullable(timestamp) }),
    line("user", { id: uuid, email: str, name: str, role: enumOf(ROLES), status: enumOf(["active", "disabled"]), created_at: timestamp, last_login_at: nullable(timestamp), disabled_at: nullable(timestamp) }),
    line("api_key", { id: uuid, name: str, prefix: str, scopes: strings, created_by: nullable(str), created_at: timestamp, revoked_at: nullable(timestamp), last_used_at: nullable(timestamp) }),
    line("batch", {
      id: uuid, name: nullable(str), market_regions: strings, status: enumOf(BATCH_STATUSES), total: int, done: int, errors: nullable(arrayOf(RowError)), root: nullable(str),
      leaf_count: nullable(int), created_at: timestamp, registered_at: nullable(timestamp), anchored_at: nullable(timestamp),
    }),
    line("product", {
      id: uuid, batch_id: uuid, ordinal: int, sku: str, name: str, serial: str, gtin: nullable(str), lot: nullable(str), attributes: freeObject,
      status: enumOf(PRODUCT_STATUSES), status_reason: nullable(str), leaf_hash: str, created_at: timestamp,
    }),
    line("scan", {
      id: uuid, product_id: nullable(uuid), batch_id: nullable(uuid), at: timestamp, verdict: enumOf(VERDICTS), score: int, country: nullable(str), lat: nullable(num), lng: nullable(num),
      factors: arrayOf(scanFactor),
    }),
    line("report", { id: uuid, product_id: uuid, batch_id: nullable(uuid), reason: str, details: nullable(str), contact: nullable(str), created_at: timestamp }),
    line("webhook", { id: uuid, kind: enumOf(["endpoint", "callback"]), url: nullable(str), description: nullable(str), events: strings, status: enumOf(["enabled", "disabled"]), created_at: timestamp, deleted_at: nullable(timestamp) }),
    line("audit", { ...auditFields, before: anyValue, after: anyValue, ...hashedEntry }),
  ],
};

export const ErasureResult = obj({ tenant_id: uuid, erased: obj({ reports: int, scan_locations: int, users: int }) });

// ---- Dashboard and analytics ------------------------------------------------------------------

const verdictCounts = Object.fromEntries(VERDICTS.map((v) => [v, int]));
/** lib/analytics fillDays: one UTC day. */
const DayCounts = obj({ date: { type: "string", format: "date" }, ...verdictCounts, total: int });

export const Dashboard = obj({
  tenant_id: nullable(uuid),
  generated_at: timestamp,
  // The platform's counts, or the one tenant asked for (null when it does not exist).
  tenants: {
    anyOf: [obj({ total: int, active: int, suspended: int }), obj({ id: uuid, name: str, status: enumOf(["active", "suspended"]) }), { type: "null" }],
  },
  batches: obj({ by_status: countsOf(BATCH_STATUSES), total: int }),
  products: obj({ total: int, estimated: { ...bool, description: "The planner's estimate (above a million rows)." } }),
  anchors: obj({ by_status: countsOf(PERIOD_STATUSES), batches_awaiting: int }),
  scans: obj({ today: int, last_7_days: int, by_verdict_7_days: obj(verdictCounts), daily: arrayOf(DayCounts) }),
  suspicious_rate_7_days: num,
  outbox: nullable(obj({ unsent: int, retrying: int, lag_seconds: int })),
  // null when the webhooks tables are absent (a cluster without the webhooks service's migrations).
  webhooks: obj({ failed_deliveries: nullable(int), failed_last_7_days: nullable(int), retrying: nullable(int) }),
});

const rates = { scans: int, suspicious: int, invalid: int, recalled: int, suspicious_rate: num, invalid_rate: num };
const rangeFields = { tenant_id: nullable(uuid), from: timestamp, to: timestamp };

export const FraudAnalytics = obj({
  ...rangeFields,
  totals: obj(rates),
  by_tenant: arrayOf(obj({ tenant_id: nullable(uuid), name: nullable(str), ...rates })),
  by_product: arrayOf(obj({ tenant_id: uuid, sku: str, name: str, ...rates })),
  by_batch: arrayOf(obj({ batch_id: uuid, name: nullable(str), tenant_id: uuid, ...rates })),
  riskiest_tags: arrayOf(
    obj({
      tag_id: uuid,
      serial: str,
      sku: str,
      name: str,
      batch_id: uuid,
      tenant_id: uuid,
      status: enumOf(PRODUCT_STATUSES),
      max_score: int,
      avg_score: int,
      devices: int,
      countries: int,
      reports: int,
      last_scan_at: timestamp,
      ...rates,
    }),
  ),
});

const geoBase = { ...rangeFields, verdict: nullable(enumOf(VERDICTS)) };
export const GeoAnalytics = {
  oneOf: [
    obj({ ...geoBase, by: { const: "country" }, countries: arrayOf(obj({ country: nullable(str), ...rates })) }),
    obj({
      ...geoBase,
      by: { const: "cell" },
      cell_degrees: num,
      cells: arrayOf(obj({ cell: { ...str, description: "The south-west corner, \"lat,lng\"." }, south: num, west: num, north: num, east: num, ...rates })),
    }),
  ],
};

export const TrendAnalytics = obj({
  ...rangeFields,
  days: arrayOf(obj({ date: { type: "string", format: "date" }, ...verdictCounts, total: int, batches_registered: int, products_registered: int, batches_anchored: int })),
});

export const AdminScan = obj({
  ...scanFields,
  tenant_id: nullable(uuid),
  tag_id: nullable(uuid),
  batch_id: nullable(uuid),
  serial: nullable(str),
  sku: nullable(str),
  product_name: nullable(str),
  device: { ...str, description: "The first 12 characters of the device fingerprint." },
  factors: arrayOf(scanFactor),
});

// ---- God mode ---------------------------------------------------------------------------------

export const RuntimeSettingView = obj({
  key: enumOf(RUNTIME_SETTINGS.map((s) => s.key)),
  description: str,
  env: str,
  read_by: str,
  min: int,
  max: int,
  default: nullable(num),
  value: nullable(num),
  effective: nullable(num),
  updated_by: nullable(str),
  updated_at: nullable(timestamp),
});

const maintenanceRun = obj({
  job: str,
  node: nullable(str),
  started_at: timestamp,
  finished_at: nullable(timestamp),
  ok: nullable(bool),
  result: nullable(freeObject),
  error: nullable(str),
});

export const SystemStatus = obj({
  generated_at: timestamp,
  namespace: nullable(str),
  node: str,
  nodes: arrayOf(obj({ id: str, available: bool, local: bool, hostname: nullable(str), cpu: nullable(num), offline_since: nullable(timestamp), services: strings })),
  circuit_breakers: obj({
    open: arrayOf(obj({ node: str, state: enumOf(["open", "half-open"]), target_node: nullable(str), service: nullable(str), action: nullable(str) })),
    nodes_not_reporting: strings,
  }),
  outbox: obj({ unsent: int, due: int, stuck: int, lag_seconds: int, by_topic: arrayOf(obj({ topic: str, n: int })) }),
  anchor: obj({
    periods: countsOf(PERIOD_STATUSES),
    batches_waiting: int,
    oldest_waiting_seconds: int,
    jobs_open: int,
    last_final_at: nullable(timestamp),
    interval_seconds: num,
  }),
  webhooks: obj({ due: nullable(int), dead: nullable(int) }),
  maintenance: arrayOf(maintenanceRun),
  settings: arrayOf(RuntimeSettingView),
});

/** An anchor period in the dead-letter table (anchor.listDeadLetters). */
export const AnchorDeadLetter = obj({
  id: uuid,
  period_id: uuid,
  reason: str,
  attempts: arrayOf(obj({ at: timestamp, attempt: int, kind: str, error: str })),
  created_at: timestamp,
  requeued_at: nullable(timestamp),
  requeued_by: nullable(str),
  root: str,
  period_status: enumOf(PERIOD_STATUSES),
  nonce: nullable(int),
  batches: int,
});

export const Failures = obj({
  batches: arrayOf(obj({ id: uuid, tenant_id: uuid, tenant: str, name: nullable(str), total: int, errors: nullable(arrayOf(RowError)), updated_at: timestamp })),
  anchor_dead_letters: arrayOf(AnchorDeadLetter),
  anchors: arrayOf(obj({ id: uuid, root: str, attempts: int, last_error: nullable(str), created_at: timestamp, tx_hash: nullable(str), batch_ids: arrayOf(uuid) })),
  outbox: arrayOf(obj({ id: int, topic: str, pending: strings, attempts: int, last_error: nullable(str), created_at: timestamp, next_at: timestamp })),
  webhook_deliveries: arrayOf(
    obj({ id: uuid, endpoint_id: uuid, tenant_id: uuid, event_type: str, attempts: int, last_status: nullable(int), last_error: nullable(str), created_at: timestamp }),
  ),
});

export const BatchRetried = obj({ kind: { const: "batch" }, id: uuid, result: FactoryBatchRetried });
export const AnchorRetried = {
  oneOf: [
    // By period or dead-letter id: anchor.retryDeadLetter.
    obj({ kind: { const: "anchor" }, id: uuid, period_id: uuid, result: obj({ period_id: uuid, status: { const: "pending" } }) }),
    // By batch or job id: anchor.retry on the tenant's behalf.
    obj({ kind: { const: "anchor" }, id: uuid, batch_id: uuid, period_id: nullable(uuid), result: AnchorStatus }),
  ],
};
export const OutboxRequeued = obj({ kind: { const: "outbox" }, requeued: int, ids: { ...arrayOf(int), description: "At most the first 100." } });
export const WebhooksRequeued = obj({ kind: { const: "webhook_delivery" }, replayed: int, skipped: arrayOf(obj({ id: uuid, reason: str })) });
export const AnythingRetried = { anyOf: [BatchRetried, ...AnchorRetried.oneOf, OutboxRequeued, WebhooksRequeued] };

/** anchor.cycle's report of one cycle (leader: false when another node holds the cycle lock). */
export const AnchorCycle = obj({
  result: obj(
    { leader: bool },
    { opened: nullable(uuid), submitted: int, chain: { const: "unavailable" }, lost_lock: { const: true } },
  ),
});

export const RuntimeSettings = obj({ items: arrayOf(RuntimeSettingView) });

/** lib/risk RiskConfig, complete (the defaults or the defaults merged with an override). */
const saturating = obj({ normal: num, saturate: num });
export const RiskConfig = obj({
  weights: obj(Object.fromEntries(FACTOR_NAMES.map((f) => [f, num]))),
  thresholds: obj({
    scan_count: saturating,
    distinct_devices: saturating,
    impossible_travel: obj({ speed_kmh: num, saturate_kmh: num, min_gap_seconds: num, accuracy_floor_m: num }),
    grey_market: obj({ max_accuracy_m: num, border_margin_m: num }),
    enumeration: obj({ normal: num, saturate: num, window_seconds: num, network_share: num }),
    fraud_reports: obj({ batch_report_weight: num, saturate: num }),
    product_status: obj({ recalled: num, void: num }),
  }),
  levels: obj({ medium: num, high: num }),
});
const riskOverride = { ...nullable(freeObject), description: "The tenant's partial override as stored (null: the defaults apply)." };
export const TenantRisk = obj({ tenant_id: uuid, override: riskOverride, effective: RiskConfig, defaults: RiskConfig });
export const TenantRiskSet = obj({ tenant_id: uuid, override: riskOverride, effective: RiskConfig });

export const JwtRotated = obj({ kid: str, retiring: arrayOf(obj({ kid: str, verifies_until: timestamp })) });

/** mixins/maintenance.mixin JobOutcome, or a maintenance service that could not be reached. */
const jobOutcome = {
  anyOf: [
    obj({ job: str, ran: { const: true }, ok: { const: true }, result: freeObject, ms: int }),
    obj({ job: str, ran: { const: true }, ok: { const: false }, error: str, ms: int }),
    obj({ job: str, ran: { const: false }, reason: enumOf(["locked", "not_due"]) }),
    obj({ job: str, ran: { const: false }, error: str }),
  ],
};
export const MaintenanceRun = obj({ jobs: arrayOf(jobOutcome) });

// ---- The web console --------------------------------------------------------------------------

/** lib/world-map worldShapes: per country its code, name and outlines ([lng, lat] rings). */
export const WorldShapes = arrayOf(obj({ c: str, n: str, p: arrayOf(arrayOf({ type: "array", prefixItems: [num, num], minItems: 2, maxItems: 2 })) }));
