// VokeTag TypeScript SDK: a typed client for the REST API. Every method maps to one operation in
// OPERATIONS, which a test checks against /openapi.json, so the SDK cannot drift from the spec.
// Self-contained: it needs only a fetch implementation (Node 18+, browsers).

export const OPERATIONS = {
  login: ["POST", "/v1/auth/login"],
  refresh: ["POST", "/v1/auth/refresh"],
  logout: ["POST", "/v1/auth/logout"],
  createTenant: ["POST", "/v1/admin/tenants"],
  listTenants: ["GET", "/v1/admin/tenants"],
  createTenantKey: ["POST", "/v1/admin/tenants/{id}/api-keys"],
  createKey: ["POST", "/v1/api-keys"],
  listKeys: ["GET", "/v1/api-keys"],
  revokeKey: ["DELETE", "/v1/api-keys/{id}"],
  registerBatch: ["POST", "/v1/batches"],
  registerProduct: ["POST", "/v1/products"],
  listBatches: ["GET", "/v1/batches"],
  getBatch: ["GET", "/v1/batches/{id}"],
  listBatchProducts: ["GET", "/v1/batches/{id}/products"],
  labels: ["GET", "/v1/batches/{id}/labels"],
  recallProduct: ["POST", "/v1/products/{id}/recall"],
  recallBatch: ["POST", "/v1/batches/{id}/recall"],
  scan: ["POST", "/v1/scan"],
  scanHistory: ["GET", "/v1/scan/{tag_id}"],
  report: ["POST", "/v1/report"],
  requestAnchor: ["POST", "/v1/anchor"],
  anchorStatus: ["GET", "/v1/anchor/{batch_id}"],
  retryAnchor: ["POST", "/v1/anchor/{id}/retry"],
  productProof: ["GET", "/v1/products/{id}/proof"],
  verifyProof: ["POST", "/v1/verify/proof"],
  verifyBatch: ["GET", "/v1/verify/{batch_id}"],
  verifyTransaction: ["GET", "/v1/verify/transaction/{tx_id}"],
  createWebhook: ["POST", "/v1/webhooks"],
  listWebhooks: ["GET", "/v1/webhooks"],
  deleteWebhook: ["DELETE", "/v1/webhooks/{id}"],
  rotateWebhookSecret: ["POST", "/v1/webhooks/{id}/rotate-secret"],
  testWebhook: ["POST", "/v1/webhooks/{id}/test"],
  listDeliveries: ["GET", "/v1/webhooks/{id}/deliveries"],
  replayDelivery: ["POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay"],
  health: ["GET", "/v1/health"],
  ready: ["GET", "/v1/ready"],
} as const satisfies Record<string, readonly [string, string]>;

export type OperationName = keyof typeof OPERATIONS;

// ---- Types of the contract ------------------------------------------------------------------

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface TokenResponse {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
}

export interface Tenant {
  id: string;
  name: string;
  status?: string;
  created_at?: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

/** A new key: `key` is shown only in this response. */
export interface NewApiKey {
  id: string;
  key: string;
  prefix: string;
  scopes: string[];
}

export interface ProductInput {
  sku: string;
  name: string;
  serial: string;
  gtin?: string;
  lot?: string;
  attributes?: Record<string, unknown>;
}

export type BatchStatus = "received" | "processing" | "registered" | "anchoring" | "anchored" | "failed";

export interface Batch {
  id: string;
  name: string | null;
  status: BatchStatus;
  market_regions: string[];
  progress: { done: number; total: number };
  rate_per_s: number | null;
  eta_s: number | null;
  root: string | null;
  errors: { row: number; field?: string; message: string }[] | null;
  created_at: string;
  registered_at: string | null;
  anchored_at: string | null;
  history?: { status: BatchStatus; at: string; detail: unknown }[];
}

export interface Product extends Required<Omit<ProductInput, "gtin" | "lot" | "attributes">> {
  id: string;
  batch_id: string;
  status: "active" | "recalled" | "void";
  token: string;
  verification_url: string;
  digital_link: string | null;
  gtin: string | null;
  lot: string | null;
  attributes: Record<string, unknown>;
}

export interface RiskFactor {
  name: string;
  value: number | string | boolean | null;
  weight: number;
  contribution: number;
  detail: string;
}

export interface ScanResult {
  verdict: "authentic" | "suspicious" | "recalled" | "invalid";
  risk: { score: number; level: "low" | "medium" | "high"; factors: RiskFactor[] };
  product: Partial<Product> | null;
  batch: { id: string; name: string | null; market_regions: string[] } | null;
  brand: { id: string; name: string } | null;
  anchor: { status: string; tx_hash: string | null; proof_url: string } | null;
  scan: { id: string; count: number; devices: number; first_scanned_at: string };
}

export interface AnchorStatus {
  batch_id: string;
  status: "pending" | "submitted" | "confirmed" | "final" | "failed";
  confirmations: number;
  tx_hash: string | null;
  block_number: number | null;
  chain_id: number;
  period_id: string | null;
}

export interface VerifyResult {
  valid: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description?: string | null;
  secret?: string;
  [k: string]: unknown;
}

export class VokeTagError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly details?: unknown,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "VokeTagError";
  }
}

export interface ClientOptions {
  baseUrl: string;
  apiKey?: string;
  accessToken?: string;
  fetch?: typeof fetch;
  /** Extra headers on every request (e.g. X-Request-Id). */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  idempotencyKey?: string;
  query?: Record<string, string | number | undefined>;
  signal?: AbortSignal;
}

type PathParams = Record<string, string>;

export class VokeTagClient {
  private f: typeof fetch;
  constructor(private opts: ClientOptions) {
    this.f = opts.fetch ?? fetch;
  }

  /** Use a user's access token from now on (after login). */
  setAccessToken(token: string | undefined) {
    this.opts.accessToken = token;
  }

  /** The raw call behind every method: one operation of OPERATIONS. */
  async call<T>(op: OperationName, params: PathParams = {}, body?: unknown, ro: RequestOptions = {}, raw = false): Promise<T> {
    const [method, template] = OPERATIONS[op];
    const path = template.replace(/\{(\w+)\}/g, (_, k) => {
      if (params[k] === undefined) throw new TypeError(`${op}: missing path parameter ${k}`);
      return encodeURIComponent(params[k]);
    });
    const qs = Object.entries(ro.query ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join("&");
    const headers: Record<string, string> = { ...(this.opts.headers ?? {}) };
    if (this.opts.apiKey) headers["x-api-key"] = this.opts.apiKey;
    if (this.opts.accessToken) headers.authorization = `Bearer ${this.opts.accessToken}`;
    if (ro.idempotencyKey) headers["idempotency-key"] = ro.idempotencyKey;
    let payload: any;
    if (typeof body === "string") {
      payload = body;
      headers["content-type"] ??= "text/csv";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    const res = await this.f(this.opts.baseUrl.replace(/\/+$/, "") + path + (qs ? `?${qs}` : ""), { method, headers, body: payload, signal: ro.signal });
    if (res.status >= 400) {
      const e: any = await res.json().catch(() => null);
      const retry = res.headers.get("retry-after");
      throw new VokeTagError(res.status, e?.error?.code ?? "HTTP_" + res.status, e?.error?.message ?? res.statusText, e?.error?.request_id ?? res.headers.get("x-request-id"), e?.error?.details, retry ? Number(retry) : undefined);
    }
    if (raw) return res as unknown as T;
    if (res.status === 204) return undefined as T;
    const type = res.headers.get("content-type") ?? "";
    return (type.includes("json") ? res.json() : res.text()) as Promise<T>;
  }

  /** Walks every page of a list operation. */
  async *paginate<T>(op: OperationName, params: PathParams = {}, query: Record<string, string | number | undefined> = {}): AsyncGenerator<T> {
    let cursor: string | undefined;
    do {
      const page = await this.call<Page<T>>(op, params, undefined, { query: { ...query, cursor } });
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  // auth
  login(email: string, password: string) {
    return this.call<TokenResponse>("login", {}, { email, password });
  }
  refresh(refresh_token: string) {
    return this.call<TokenResponse>("refresh", {}, { refresh_token });
  }
  logout(refresh_token: string) {
    return this.call<void>("logout", {}, { refresh_token });
  }
  // admin
  createTenant(name: string, ro?: RequestOptions) {
    return this.call<Tenant>("createTenant", {}, { name }, ro);
  }
  createTenantKey(tenantId: string, body: { name: string; scopes?: string[] }, ro?: RequestOptions) {
    return this.call<NewApiKey>("createTenantKey", { id: tenantId }, body, ro);
  }
  // keys
  createKey(body: { name: string; scopes?: string[] }, ro?: RequestOptions) {
    return this.call<NewApiKey>("createKey", {}, body, ro);
  }
  listKeys(query?: { limit?: number; cursor?: string }) {
    return this.call<Page<ApiKey>>("listKeys", {}, undefined, { query });
  }
  revokeKey(id: string) {
    return this.call<ApiKey>("revokeKey", { id });
  }
  // batches and products
  registerBatch(body: { name?: string; market_regions?: string[]; products: ProductInput[] }, ro?: RequestOptions) {
    return this.call<{ id: string; status: BatchStatus }>("registerBatch", {}, body, ro);
  }
  /** A CSV file (header sku,name,serial,gtin,lot,attributes) as one string. */
  registerBatchCsv(csv: string, query: { name?: string; market_regions?: string } = {}, ro: RequestOptions = {}) {
    return this.call<{ id: string; status: BatchStatus }>("registerBatch", {}, csv, { ...ro, query: { ...query, ...(ro.query ?? {}) } });
  }
  registerProduct(body: ProductInput & { market_regions?: string[] }, ro?: RequestOptions) {
    return this.call<{ id: string; status: BatchStatus }>("registerProduct", {}, body, ro);
  }
  getBatch(id: string) {
    return this.call<Batch>("getBatch", { id });
  }
  listBatches(query?: { limit?: number; cursor?: string; status?: BatchStatus }) {
    return this.call<Page<Batch>>("listBatches", {}, undefined, { query });
  }
  listBatchProducts(id: string, query?: { limit?: number; cursor?: string }) {
    return this.call<Page<Product>>("listBatchProducts", { id }, undefined, { query });
  }
  /** The raw Response of a label file, to stream to disk. */
  labels(id: string, format: "csv" | "svg" | "pdf") {
    return this.call<Response>("labels", { id }, undefined, { query: { format } }, true);
  }
  recallProduct(id: string, reason: string) {
    return this.call<unknown>("recallProduct", { id }, { reason });
  }
  recallBatch(id: string, reason: string) {
    return this.call<unknown>("recallBatch", { id }, { reason });
  }
  /** Polls a batch until it leaves received/processing; onProgress sees each poll. */
  async waitForBatch(id: string, onProgress?: (b: Batch) => void, everyMs = 500): Promise<Batch> {
    for (;;) {
      const b = await this.getBatch(id);
      onProgress?.(b);
      if (b.status !== "received" && b.status !== "processing") return b;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
  // scans
  scan(body: { token: string; location?: { lat: number; lng: number; accuracy_m?: number }; fingerprint?: string }) {
    return this.call<ScanResult>("scan", {}, body);
  }
  scanHistory(tagId: string, query?: { limit?: number; cursor?: string }) {
    return this.call<Page<unknown>>("scanHistory", { tag_id: tagId }, undefined, { query });
  }
  report(body: { token?: string; tag_id?: string; reason: "counterfeit" | "tampered_tag" | "wrong_product" | "damaged" | "other"; details?: string; contact?: string }, ro?: RequestOptions) {
    return this.call<{ id: string }>("report", {}, body, ro);
  }
  // anchoring and verification
  requestAnchor(batch_id: string, callback_url?: string, ro?: RequestOptions) {
    return this.call<{ id: string; batch_id: string; status: string }>("requestAnchor", {}, { batch_id, callback_url }, ro);
  }
  anchorStatus(batchId: string) {
    return this.call<AnchorStatus>("anchorStatus", { batch_id: batchId });
  }
  productProof(productId: string) {
    return this.call<Record<string, any>>("productProof", { id: productId });
  }
  verifyProof(doc: unknown) {
    return this.call<VerifyResult>("verifyProof", {}, doc);
  }
  verifyBatch(batchId: string) {
    return this.call<VerifyResult & { batch_id: string }>("verifyBatch", { batch_id: batchId });
  }
  verifyTransaction(txHash: string) {
    return this.call<Record<string, unknown>>("verifyTransaction", { tx_id: txHash });
  }
  // webhooks
  createWebhook(body: { url: string; events: string[]; description?: string }, ro?: RequestOptions) {
    return this.call<Webhook>("createWebhook", {}, body, ro);
  }
  listWebhooks(query?: { limit?: number; cursor?: string }) {
    return this.call<Page<Webhook>>("listWebhooks", {}, undefined, { query });
  }
  deleteWebhook(id: string) {
    return this.call<unknown>("deleteWebhook", { id });
  }
}

export function createClient(opts: ClientOptions) {
  return new VokeTagClient(opts);
}
