// Traces: spans exported in Zipkin v2 format to a receiver on loopback (what an OTel collector's
// zipkin receiver takes), one trace per request id across services; the request id in log lines.
import http from "node:http";
import crypto from "node:crypto";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { client } from "../support/http";

describe("tracing and request ids", () => {
  let node: NodeHandle;
  let receiver: http.Server;
  const spans: any[] = [];
  let base: string;

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        if (req.url === "/api/v2/spans") spans.push(...JSON.parse(body));
        res.writeHead(202).end();
      });
    });
    const zport = await freePort();
    await new Promise<void>((r) => receiver.listen(zport, "127.0.0.1", () => r()));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: "memory://", TRACING_ZIPKIN_URL: `http://127.0.0.1:${zport}` });
  });

  afterAll(async () => {
    await node?.stop();
    receiver?.close();
  });

  it("exports the gateway and service spans of one request under one trace id", async () => {
    const rid = crypto.randomUUID();
    const res = await client(base).request("POST", "/v1/scan", { body: { token: "k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA" }, headers: { "x-request-id": rid } });
    expect(res.status).toBe(200);
    const traceId = rid.replace(/-/g, "").slice(0, 16);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !spans.some((s) => s.traceId === traceId && s.name === "action 'scan.scan'")) await new Promise((r) => setTimeout(r, 200));
    const mine = spans.filter((s) => s.traceId === traceId);
    const names = mine.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(["action 'scan.scan'"]));
    expect(names.some((n: string) => n.includes("POST /v1/scan") || n.includes("api.rest"))).toBe(true);
    for (const s of mine) {
      expect(s.id).toMatch(/^[0-9a-f]{16}$/);
      expect(typeof s.timestamp).toBe("number");
      expect(s.localEndpoint?.serviceName).toBeTruthy();
    }
  });

  it("hashes a non-hex client request id into a valid Zipkin trace id", async () => {
    const rid = "client-order-4711";
    await client(base).request("GET", "/v1/health", { headers: { "x-request-id": rid } });
    const want = crypto.createHash("sha256").update(rid).digest("hex").slice(0, 16);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !spans.some((s) => s.traceId === want)) await new Promise((r) => setTimeout(r, 200));
    expect(spans.some((s) => s.traceId === want)).toBe(true);
  });
});
