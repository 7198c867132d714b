// The OpenAPI document and the routes agree both ways: every route a service declares is in the
// spec, the spec names no route the gateway does not serve, and /docs renders it without a CDN.
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { client } from "../support/http";
import { listOperations } from "../../lib/openapi";
import { SCHEMAS } from "../../services";

/** Every `rest` route declared in the service schemas, as "METHOD /path/{param}". */
function declaredRoutes(): string[] {
  const out: string[] = [];
  for (const schema of Object.values(SCHEMAS))
    for (const action of Object.values<any>(schema.actions ?? {})) {
      if (!action || typeof action !== "object" || !action.rest) continue;
      for (const r of Array.isArray(action.rest) ? action.rest : [action.rest]) {
        const path = String(r.fullPath).replace(/:([A-Za-z0-9_]+)/g, "{$1}");
        out.push(`${r.method} ${path}`);
      }
    }
  return out.sort();
}

describe("OpenAPI contract", () => {
  let node: NodeHandle;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: "memory://", VERIFICATION_URL_BASE: base });
  });
  afterAll(() => node?.stop());

  it("lists exactly the routes the services declare", async () => {
    const spec = (await client(base).get("/openapi.json")).body;
    const inSpec = listOperations(spec).map((o) => `${o.method} ${o.path}`).sort();
    const declared = declaredRoutes();
    expect(inSpec.filter((r) => !declared.includes(r))).toEqual([]);
    expect(declared.filter((r) => !inSpec.includes(r))).toEqual([]);
  });

  it("names no route the gateway does not serve", async () => {
    const spec = (await client(base).get("/openapi.json")).body;
    const api = client(base);
    const unserved: string[] = [];
    for (const op of listOperations(spec)) {
      const path = op.path.replace(/\{[^}]+\}/g, "00000000-0000-4000-8000-000000000000");
      const res = await api.request(op.method, path, op.method === "GET" || op.method === "DELETE" ? {} : { body: {} });
      if (res.status === 404 && res.body?.error?.message === "no such route") unserved.push(`${op.method} ${op.path}`);
      expect(res.status).toBeLessThan(500);
    }
    expect(unserved).toEqual([]);
  });

  it("gives every operation a success response with a body schema (or its media type when not JSON)", async () => {
    const spec = (await client(base).get("/openapi.json")).body;
    const missing: string[] = [];
    for (const [path, item] of Object.entries<any>(spec.paths))
      for (const [method, op] of Object.entries<any>(item)) {
        const ok = Object.entries<any>(op.responses ?? {}).filter(([code]) => /^[23]/.test(code));
        const described = ok.some(([code, r]) => {
          if (code === "204" || /^3/.test(code)) return true;
          const content = r.content ?? {};
          // A JSON body needs its schema; other media types (CSV, PDF, HTML, JSON lines) are named only.
          return Object.entries<any>(content).some(([media, c]) => (/^application\/(json|[^;]+\+json)$/.test(media) ? !!c.schema?.type || !!c.schema?.$ref || !!c.schema?.oneOf || !!c.schema?.anyOf : true));
        });
        if (!described) missing.push(`${method.toUpperCase()} ${path}`);
      }
    expect(missing).toEqual([]);
  });

  it("documents every operation with auth and an error schema, and renders /docs from local assets", async () => {
    const api = client(base);
    const spec = (await api.get("/openapi.json")).body;
    expect(spec.openapi).toMatch(/^3\.1\./);
    expect(spec.components.securitySchemes).toMatchObject({ ApiKey: { type: "apiKey", in: "header", name: "X-API-Key" }, Bearer: { type: "http", scheme: "bearer" } });
    for (const [path, item] of Object.entries<any>(spec.paths))
      for (const [method, op] of Object.entries<any>(item)) {
        if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
        expect({ route: `${method} ${path}`, hasSummary: !!op.summary }).toEqual({ route: `${method} ${path}`, hasSummary: true });
        expect(op.responses).toBeDefined();
      }
    const docs = await fetch(`${base}/docs`);
    const html = await docs.text();
    expect(docs.headers.get("content-type")).toContain("text/html");
    expect(html).not.toMatch(/https?:\/\/(?!127\.0\.0\.1|localhost)[^"']*\.(js|css)/);
    expect(html).toContain("/v1/scan");
  });
});
