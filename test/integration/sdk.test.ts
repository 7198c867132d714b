// The SDK against the spec and a live node: every SDK operation exists in /openapi.json with the
// same method and path, and a whole journey runs through the SDK alone.
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { listOperations } from "../../lib/openapi";
import { createClient, OPERATIONS, VokeTagError } from "../../sdk";
import { ADMIN } from "../support/journey";

describe("TypeScript SDK", () => {
  let node: NodeHandle;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: "memory://", VERIFICATION_URL_BASE: base, VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password, ANCHOR_INTERVAL: "1" });
  });
  afterAll(() => node?.stop());

  it("names only operations the spec has, with the same method and path", async () => {
    const spec = (await (await fetch(`${base}/openapi.json`)).json()) as object;
    const ops = new Set(listOperations(spec).map((o) => `${o.method} ${o.path}`));
    const missing = Object.entries(OPERATIONS).filter(([, [m, p]]) => !ops.has(`${m} ${p}`)).map(([name, [m, p]]) => `${name}: ${m} ${p}`);
    expect(missing).toEqual([]);
  });

  it("runs the journey: login, tenant, key, batch, scan, anchor, proof, verify", async () => {
    const admin = createClient({ baseUrl: base });
    const tokens = await admin.login(ADMIN.email, ADMIN.password);
    admin.setAccessToken(tokens.access_token);
    const tenant = await admin.createTenant("SDK Tenant");
    const key = await admin.createTenantKey(tenant.id, { name: "sdk" });
    const vt = createClient({ baseUrl: base, apiKey: key.key });
    const accepted = await vt.registerBatch({ products: [{ sku: "S", name: "SDK product", serial: "SDK-1" }] }, { idempotencyKey: "sdk-batch-1" });
    const replay = await vt.registerBatch({ products: [{ sku: "S", name: "SDK product", serial: "SDK-1" }] }, { idempotencyKey: "sdk-batch-1" });
    expect(replay.id).toBe(accepted.id);
    const seen: string[] = [];
    const batch = await vt.waitForBatch(accepted.id, (b) => seen.push(b.status), 100);
    expect(["registered", "anchoring", "anchored"]).toContain(batch.status);
    const [product] = (await vt.listBatchProducts(batch.id)).items;
    const scan = await createClient({ baseUrl: base }).scan({ token: product.token });
    expect(scan.verdict).toBe("authentic");
    await vt.requestAnchor(batch.id);
    let status = await vt.anchorStatus(batch.id);
    for (let i = 0; i < 100 && status.status !== "final"; i++) {
      await new Promise((r) => setTimeout(r, 200));
      status = await vt.anchorStatus(batch.id);
    }
    expect(status.status).toBe("final");
    const proof = await vt.productProof(product.id);
    expect((await vt.verifyProof(proof)).valid).toBe(true);
  });

  it("turns error responses into VokeTagError with status, code and request id", async () => {
    const vt = createClient({ baseUrl: base, apiKey: "vk_test_abcdefgh_" + "x".repeat(43) });
    const err = await vt.getBatch("00000000-0000-4000-8000-000000000000").catch((e) => e);
    expect(err).toBeInstanceOf(VokeTagError);
    expect(err.status).toBe(401);
    expect(err.code).toBe("UNAUTHORIZED");
    expect(err.requestId).toBeTruthy();
  });
});
