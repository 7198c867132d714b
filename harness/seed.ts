// Seeds a running cluster through its REST API: an admin login, a tenant, a key, a registered
// batch; returns what load generators need (tokens, ids).
export async function seedBatch(baseUrl: string, admin: { email: string; password: string }, products = 100) {
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(baseUrl + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const json: any = await res.json().catch(() => null);
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const get = async (path: string, headers: Record<string, string>) => {
    const res = await fetch(baseUrl + path, { headers });
    return res.json() as Promise<any>;
  };
  const login = await post("/v1/auth/login", admin);
  const jwt = { authorization: `Bearer ${login.access_token}` };
  const tenant = await post("/v1/admin/tenants", { name: `Seed ${Date.now()}` }, jwt);
  const key = (await post(`/v1/admin/tenants/${tenant.id}/api-keys`, { name: "seed" }, jwt)).key as string;
  const auth = { "x-api-key": key };
  const batch = await post(
    "/v1/batches",
    { name: "seed", products: Array.from({ length: products }, (_, i) => ({ sku: "SEED", name: "Seed product", serial: `S${Date.now()}-${i}` })) },
    auth,
  );
  for (let t = 0; t < 300; t++) {
    const b = await get(`/v1/batches/${batch.id}`, auth);
    if (["registered", "anchoring", "anchored"].includes(b.status)) break;
    if (b.status === "failed") throw new Error(`seed batch failed: ${JSON.stringify(b.errors)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const tokens: string[] = [];
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page: any = await get(`/v1/batches/${batch.id}/products?limit=1000${cursor ? `&cursor=${cursor}` : ""}`, auth);
    for (const p of page.items) {
      tokens.push(p.token);
      ids.push(p.id);
    }
    cursor = page.next_cursor;
  } while (cursor);
  return { jwt, key, tenantId: tenant.id, batchId: batch.id, tokens, productIds: ids };
}
