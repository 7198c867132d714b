// One product's whole journey through REST (issue 2): login, tenant, key, batch, scan, anchor,
// proof. Shared by the embedded and the cluster suites so both assert exactly the same contract.
import { client, until } from "./http";

export const ADMIN = { email: "admin@voketag.test", password: "correct horse battery staple" };

export async function runJourney(base: string) {
  const api = client(base);

  // 1. Login as the bootstrap admin.
  const bad = await api.post("/v1/auth/login", { email: ADMIN.email, password: "wrong password!!" });
  expect(bad.status).toBe(401);
  expect(bad.body.error.code).toBeDefined();
  const login = await api.post("/v1/auth/login", ADMIN);
  expect(login.status).toBe(200);
  expect(login.body).toMatchObject({ token_type: "Bearer", expires_in: 900 });
  expect(typeof login.body.refresh_token).toBe("string");
  const jwt = { authorization: `Bearer ${login.body.access_token}` };
  const jwks = await api.get("/.well-known/jwks.json");
  expect(jwks.status).toBe(200);
  expect(jwks.body.keys[0]).toMatchObject({ kty: "RSA", alg: "RS256" });

  // 2. Tenant and its API key (shown once).
  expect((await api.post("/v1/admin/tenants", { name: "Acme" })).status).toBe(401);
  const tenant = await api.post("/v1/admin/tenants", { name: "Acme Watches" }, jwt);
  expect(tenant.status).toBe(201);
  expect(tenant.body).toMatchObject({ name: "Acme Watches" });
  const keyRes = await api.post(`/v1/admin/tenants/${tenant.body.id}/api-keys`, { name: "factory line 1" }, jwt);
  expect(keyRes.status).toBe(201);
  expect(keyRes.body.key).toMatch(/^vk_[a-z]+_[a-z0-9]{8}_/);
  expect(keyRes.body.prefix).toBeDefined();
  const key = { "x-api-key": keyRes.body.key };
  const list = await api.get("/v1/api-keys", key);
  expect(list.status).toBe(200);
  expect(JSON.stringify(list.body)).not.toContain(keyRes.body.key);

  // 3. A batch of three products.
  const batch = await api.post(
    "/v1/batches",
    {
      name: "Spring 2026",
      market_regions: ["BR", "PT"],
      products: [
        { sku: "W-100", name: "Diver 100", serial: "SN0001", gtin: "09506000134352", lot: "L1" },
        { sku: "W-100", name: "Diver 100", serial: "SN0002", gtin: "09506000134352", lot: "L1" },
        { sku: "W-200", name: "Pilot 200", serial: "SN0003", attributes: { colour: "black" } },
      ],
    },
    key,
  );
  expect(batch.status).toBe(202);
  expect(batch.body).toMatchObject({ status: "received" });
  const batchId = batch.body.id;
  // The anchoring cycle may take the batch on as soon as it is registered: any later status will do.
  const registered = await until(() => api.get(`/v1/batches/${batchId}`, key), (r) => ["registered", "anchoring", "anchored"].includes(r.body.status), 30_000);
  expect(registered.body.progress).toEqual({ done: 3, total: 3 });
  expect(registered.body.history.map((h: any) => h.status).slice(0, 3)).toEqual(["received", "processing", "registered"]);
  const products = await api.get(`/v1/batches/${batchId}/products`, key);
  expect(products.status).toBe(200);
  expect(products.body.items).toHaveLength(3);
  expect(products.body.next_cursor).toBeNull();
  for (const p of products.body.items) {
    expect(p.verification_url).toBe(`${base}/r/${p.token}`);
    expect(p.batch_id).toBe(batchId);
    expect(p.status).toBe("active");
  }
  const [first, , third] = products.body.items;
  expect(first.digital_link).toMatch(new RegExp(`^${base}/01/09506000134352/10/L1/21/SN0001\\?vt=`));
  expect(third.digital_link).toBeNull();

  // 4. Scans.
  const scan = await api.post("/v1/scan", { token: first.token });
  expect(scan.status).toBe(200);
  expect(scan.body.verdict).toBe("authentic");
  expect(scan.body.product).toMatchObject({ id: first.id, serial: "SN0001" });
  expect(scan.body.batch).toMatchObject({ id: batchId });
  expect(scan.body.brand).toMatchObject({ name: "Acme Watches" });
  expect(scan.body.scan.count).toBe(1);
  expect(scan.body.risk.factors.length).toBeGreaterThanOrEqual(7);
  const i = first.token.length - 3;
  const garbled = first.token.slice(0, i) + (first.token[i] === "A" ? "B" : "A") + first.token.slice(i + 1);
  const forged = await api.post("/v1/scan", { token: garbled });
  expect(forged.status).toBe(200);
  expect(forged.body.verdict).toBe("invalid");
  const noToken = await api.post("/v1/scan", { location: { lat: 1, lng: 2 } });
  expect(noToken.status).toBe(400);
  expect(noToken.body.error).toMatchObject({ code: "VALIDATION_ERROR" });
  expect(noToken.body.error.request_id).toBeTruthy();
  const broken = await api.request("POST", "/v1/scan", { raw: "{not json", headers: { "content-type": "application/json" } });
  expect(broken.status).toBe(400);
  const page = await fetch(first.verification_url, { headers: { "accept-language": "pt-BR,pt;q=0.9" } });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("Produto original");

  // 5. Anchoring.
  const anchor = await api.post("/v1/anchor", { batch_id: batchId }, key);
  expect(anchor.status).toBe(202);
  expect(anchor.body).toMatchObject({ batch_id: batchId });
  // A 202 names where to follow the work, like a 201 names what it made.
  expect(anchor.headers.get("location")).toBe(`/v1/anchor/${batchId}`);
  const again = await api.post("/v1/anchor", { batch_id: batchId }, key);
  expect(again.body.id).toBe(anchor.body.id);
  const final = await until(() => api.get(`/v1/anchor/${batchId}`, key), (r) => r.body.status === "final", 60_000, 300);
  expect(final.body.tx_hash).toMatch(/^0x[0-9a-f]{64}$/);
  expect(final.body.block_number).toBeGreaterThan(0);
  expect(final.body.confirmations).toBeGreaterThanOrEqual(1);
  const tx = await api.get(`/v1/verify/transaction/${final.body.tx_hash}`);
  expect(tx.status).toBe(200);
  expect(tx.body.block_number).toBe(final.body.block_number);
  expect(tx.body.is_voketag_anchor).toBe(true);
  await until(() => api.get(`/v1/batches/${batchId}`, key), (r) => r.body.status === "anchored", 30_000);
  const vb = await api.get(`/v1/verify/${batchId}`);
  expect(vb.body.valid).toBe(true);

  // 6. Proof document and its verification.
  const proof = await api.get(`/v1/products/${first.id}/proof`);
  expect(proof.status).toBe(200);
  expect(proof.body.anchor.tx_hash).toBe(final.body.tx_hash);
  const verified = await api.post("/v1/verify/proof", proof.body);
  expect(verified.status).toBe(200);
  expect(verified.body.valid).toBe(true);
  const tampered = JSON.parse(JSON.stringify(proof.body));
  const h = tampered.batch.root as string;
  tampered.batch.root = (h[0] === "0" ? "1" : "0") + h.slice(1);
  const rejected = await api.post("/v1/verify/proof", tampered);
  expect(rejected.status).toBe(200);
  expect(rejected.body.valid).toBe(false);
  expect(rejected.body.checks.filter((c: any) => !c.ok).map((c: any) => c.name)).toContain("batch_path");
  const unparsable = await api.post("/v1/verify/proof", { hello: "world" });
  expect(unparsable.status).toBe(400);

  return { jwt, key, batchId, products: products.body.items, tenantId: tenant.body.id };
}
