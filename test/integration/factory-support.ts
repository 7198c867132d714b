// Shared by the factory suites: a tenant with a key through the admin API, product files, raw
// HTTP bodies (CSV, octet-stream) and waiting for a batch to settle.
import crypto from "node:crypto";
import { client, until } from "../support/http";
import { ADMIN } from "../support/journey";

export { ADMIN };

export interface Tenant {
  id: string;
  key: string;
  h: Record<string, string>;
}

export async function adminJwt(base: string): Promise<Record<string, string>> {
  const login = await client(base).post("/v1/auth/login", ADMIN);
  if (login.status !== 200) throw new Error(`admin login failed: ${login.status} ${login.text}`);
  return { authorization: `Bearer ${login.body.access_token}` };
}

export async function newTenant(base: string, name = "Acme", scopes?: string[]): Promise<Tenant> {
  const api = client(base);
  const jwt = await adminJwt(base);
  const t = await api.post("/v1/admin/tenants", { name: `${name} ${crypto.randomBytes(3).toString("hex")}` }, jwt);
  if (t.status !== 201) throw new Error(`tenant: ${t.status} ${t.text}`);
  const k = await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "line 1", ...(scopes && { scopes }) }, jwt);
  if (k.status !== 201) throw new Error(`key: ${k.status} ${k.text}`);
  return { id: t.body.id, key: k.body.key, h: { "x-api-key": k.body.key } };
}

export const GTIN = "09506000134352";

/** A product CSV: `n` rows, serials `${prefix}${i}`, every third without GTIN, attributes JSON. */
export function productCsv(n: number, prefix = "SN", opts: { pad?: number } = {}): string {
  const lines = ["sku,name,serial,gtin,lot,attributes"];
  const pad = opts.pad ? "x".repeat(opts.pad) : "";
  for (let i = 0; i < n; i++) {
    const gtin = i % 3 === 2 ? "" : GTIN;
    lines.push(`W-${i % 10},"Watch, model ${i % 10}",${prefix}${i},${gtin},L${i % 7},"{""i"":${i},""c"":""é ${pad}""}"`);
  }
  return lines.join("\r\n") + "\r\n";
}

export async function raw(base: string, method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>) {
  const res = await fetch(base + path, { method, headers, body: body as any });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

export function postCsv(base: string, t: Tenant, csv: string | Buffer, query = "", extra: Record<string, string> = {}) {
  return raw(base, "POST", `/v1/batches${query}`, csv, { ...t.h, "content-type": "text/csv", ...extra });
}

/** Waits until the batch leaves received/processing; answers its final view. */
export async function settled(base: string, t: Tenant, batchId: string, timeoutMs = 60_000) {
  const r = await until(
    () => client(base).get(`/v1/batches/${batchId}`, t.h),
    (r) => r.status === 200 && !["received", "processing"].includes(r.body.status),
    timeoutMs,
    100,
  );
  return r.body;
}

export async function allProducts(base: string, t: Tenant, batchId: string): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | null = null;
  do {
    const r: any = await client(base).get(`/v1/batches/${batchId}/products?limit=1000${cursor ? `&cursor=${cursor}` : ""}`, t.h);
    if (r.status !== 200) throw new Error(`products: ${r.status} ${r.text}`);
    out.push(...r.body.items);
    cursor = r.body.next_cursor;
  } while (cursor);
  return out;
}

export const sha256 = (b: string | Buffer) => crypto.createHash("sha256").update(b).digest("hex");
