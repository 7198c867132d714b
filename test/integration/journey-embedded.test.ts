// The journey on the embedded defaults: one process, PGlite, in-memory cache, in-process EVM chain.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { runJourney, ADMIN } from "../support/journey";
import { client } from "../support/http";

describe("journey on embedded defaults", () => {
  let node: NodeHandle;
  let base: string;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-embedded-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({
      PORT: String(port),
      VOKETAG_DATA_DIR: dataDir,
      VERIFICATION_URL_BASE: base,
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
      ANCHOR_INTERVAL: "1",
    });
  });

  afterAll(async () => {
    await node?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  let jwt: Record<string, string>;
  it("carries one batch from registration to a verified proof", async () => {
    ({ jwt } = await runJourney(base));
  });

  it("serves Prometheus metrics to staff only", async () => {
    const api = client(base);
    expect((await api.get("/metrics")).status).toBe(401);
    const m = await api.get("/metrics", jwt);
    expect(m.status).toBe(200);
    expect(m.headers.get("content-type")).toContain("text/plain");
    expect(m.text).toMatch(/^moleculer_request_total\{.*action="scan.scan".*\} \d+/m);
  });

  it("answers health, readiness and the OpenAPI document", async () => {
    const api = client(base);
    expect((await api.get("/v1/health")).status).toBe(200);
    const ready = await api.get("/v1/ready");
    expect(ready.status).toBe(200);
    expect(ready.body.checks.pglite.ok).toBe(true);
    expect(ready.body.checks.chain.ok).toBe(true);
    const spec = await api.get("/openapi.json");
    expect(spec.status).toBe(200);
    expect(spec.body.openapi).toMatch(/^3\.1/);
    for (const p of ["/v1/batches", "/v1/scan", "/v1/anchor", "/v1/verify/proof", "/v1/auth/login", "/v1/admin/tenants/{id}/api-keys"])
      expect(Object.keys(spec.body.paths)).toContain(p);
  });

  it("logs one JSON line per request with its request id, and echoes the id", async () => {
    const res = await fetch(`${base}/v1/health`, { headers: { "x-request-id": "journey-req-1" } });
    expect(res.headers.get("x-request-id")).toBe("journey-req-1");
    await new Promise((r) => setTimeout(r, 200));
    const line = node.logs.map((l) => { try { return JSON.parse(l); } catch { return null; } }).find((l) => l?.request_id === "journey-req-1");
    expect(line).toMatchObject({ request_id: "journey-req-1", method: "GET", path: "/v1/health", status: 200, service: "api", action: "api.health" });
    expect(typeof line.latency_ms).toBe("number");
  });

  it("answers unknown routes and bad ids with JSON errors, never a 500", async () => {
    const api = client(base);
    const nf = await api.get("/v1/nope");
    expect(nf.status).toBe(404);
    expect(nf.body.error.code).toBe("NOT_FOUND");
    const key = await api.get("/v1/batches/not-a-uuid", { "x-api-key": "vk_test_abcdefgh_" + "x".repeat(43) });
    expect(key.status).toBe(401);
  });

  it("stops on SIGTERM within 10 s", async () => {
    const t0 = Date.now();
    const code = await node.stop("SIGTERM");
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
