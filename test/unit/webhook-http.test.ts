// One webhook POST against real loopback servers: pinned addresses, refusals, redirects, timeouts.
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import type { AddressInfo } from "node:net";
import { postWebhook, refuseUrl, Resolver } from "../../lib/webhook-http";

const OPEN = { allowPrivate: true, requireHttps: false };
const STRICT = { allowPrivate: false, requireHttps: false };

interface Seen { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }

function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, res, body);
    });
  });
  return new Promise<{ port: number; seen: Seen[]; close: () => Promise<void> }>((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        seen,
        close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      }),
    ),
  );
}

const post = (url: string, extra: Partial<Parameters<typeof postWebhook>[0]> = {}) =>
  postWebhook({ url, headers: { "webhook-id": "msg_1" }, body: '{"a":1}', timeoutMs: 3000, policy: OPEN, ...extra });

describe("postWebhook", () => {
  it("POSTs the body and headers and reports status and latency", async () => {
    const s = await serve((_q, res) => res.writeHead(204).end());
    try {
      const r = await post(`http://127.0.0.1:${s.port}/in?x=1`);
      expect(r).toMatchObject({ ok: true, status: 204, error: null, address: "127.0.0.1", permanent: false });
      expect(r.latencyMs).toBeGreaterThan(0);
      expect(s.seen[0]).toMatchObject({ method: "POST", url: "/in?x=1", body: '{"a":1}' });
      expect(s.seen[0].headers).toMatchObject({ "content-type": "application/json", "webhook-id": "msg_1" });
    } finally {
      await s.close();
    }
  });

  it("refuses loopback without the flag, and metadata even with it, without connecting", async () => {
    const s = await serve((_q, res) => res.writeHead(200).end());
    try {
      const r = await post(`http://127.0.0.1:${s.port}/`, { policy: STRICT });
      expect(r).toMatchObject({ ok: false, status: null, permanent: true });
      expect(r.error).toMatch(/refused: .*loopback/);
      const meta = await post("http://169.254.169.254/latest/meta-data/");
      expect(meta).toMatchObject({ ok: false, permanent: true });
      expect(meta.error).toMatch(/metadata/);
      expect(s.seen).toHaveLength(0);
    } finally {
      await s.close();
    }
  });

  it("resolves a name once and connects to the address it checked, keeping the name in Host", async () => {
    const s = await serve((_q, res) => res.writeHead(200).end("ok"));
    const calls: string[] = [];
    // A rebinding resolver: the first answer passes the check, later ones would not.
    const rebinding: Resolver = async (h) => {
      calls.push(h);
      return calls.length === 1 ? ["127.0.0.1"] : ["169.254.169.254"];
    };
    try {
      const r = await post(`http://hooks.voketag.test:${s.port}/in`, { resolve: rebinding });
      expect(r).toMatchObject({ ok: true, status: 200, address: "127.0.0.1", body: "ok" });
      expect(calls).toEqual(["hooks.voketag.test"]);
      expect(s.seen[0].headers.host).toBe(`hooks.voketag.test:${s.port}`);
    } finally {
      await s.close();
    }
  });

  it("refuses a name whose answers include a forbidden address, or that resolves to loopback without the flag", async () => {
    const mixed: Resolver = async () => ["127.0.0.1", "169.254.169.254"];
    const r = await post("http://hooks.voketag.test:8080/", { resolve: mixed });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/metadata/);
    const lo: Resolver = async () => ["127.0.0.1"];
    const r2 = await post("http://hooks.voketag.test:8080/", { resolve: lo, policy: STRICT });
    expect(r2.error).toMatch(/hooks\.voketag\.test resolves to a loopback address/);
    expect(r2.permanent).toBe(false); // DNS may change: the delivery retries
    expect(await refuseUrl("http://localhost:8080/", STRICT)).toMatch(/loopback/);
    expect(await refuseUrl("http://localhost:8080/", OPEN)).toBeNull();
    const nx: Resolver = async () => { throw Object.assign(new Error("not found"), { code: "ENOTFOUND" }); };
    expect(await refuseUrl("http://no-such-host.invalid/", OPEN, nx)).toMatch(/does not resolve \(ENOTFOUND\)/);
  });

  it("does not follow redirects: a 3xx is a failure and the target never hears from us", async () => {
    const target = await serve((_q, res) => res.writeHead(200).end());
    const s = await serve((_q, res) => res.writeHead(302, { location: `http://127.0.0.1:${target.port}/` }).end());
    try {
      const r = await post(`http://127.0.0.1:${s.port}/`);
      expect(r).toMatchObject({ ok: false, status: 302 });
      expect(r.error).toMatch(/redirect \(302\) not followed/);
      expect(target.seen).toHaveLength(0);
    } finally {
      await s.close();
      await target.close();
    }
  });

  it("reads Retry-After, keeps the start of the answer, and times out", async () => {
    const s = await serve((req, res) => {
      if (req.url === "/busy") res.writeHead(503, { "retry-after": "42" }).end("x".repeat(5000));
      // "/hang": never answers
    });
    try {
      const busy = await post(`http://127.0.0.1:${s.port}/busy`);
      expect(busy).toMatchObject({ ok: false, status: 503, retryAfter: 42, error: "HTTP 503" });
      expect(busy.body).toHaveLength(1024);
      const t0 = Date.now();
      const hang = await post(`http://127.0.0.1:${s.port}/hang`, { timeoutMs: 700 });
      expect(hang.ok).toBe(false);
      expect(hang.error).toMatch(/timed out/);
      expect(Date.now() - t0).toBeLessThan(2500);
    } finally {
      await s.close();
    }
  });

  it("reaches an IPv6 literal, with a bracketed Host header", async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(String(req.headers.host));
      res.writeHead(200).end();
    });
    const listening = await new Promise<boolean>((r) => {
      server.once("error", () => r(false));
      server.listen(0, "::1", () => r(true));
    });
    if (!listening) return void console.warn("no IPv6 loopback on this machine: IPv6 literal delivery not exercised");
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await post(`http://[::1]:${port}/v6`);
      expect(r).toMatchObject({ ok: true, status: 200, address: "::1" });
      expect(seen).toEqual([`[::1]:${port}`]);
      expect((await post(`http://[::1]:${port}/v6`, { policy: STRICT })).error).toMatch(/loopback/);
    } finally {
      server.close();
    }
  });

  it("reports a closed port as a connection error", async () => {
    const s = await serve(() => undefined);
    const port = s.port;
    await s.close();
    const r = await post(`http://127.0.0.1:${port}/`);
    expect(r).toMatchObject({ ok: false, status: null });
    expect(r.error).toMatch(/ECONNREFUSED/);
  });

  it("speaks TLS to the pinned address with the name as SNI, and verifies the certificate", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path.join(dir, "k.pem"), "-out", path.join(dir, "c.pem"), "-days", "1", "-subj", "/CN=hooks.voketag.test"], { stdio: "ignore" });
    let sni: string | undefined;
    let requests = 0;
    const creds = { key: fs.readFileSync(path.join(dir, "k.pem")), cert: fs.readFileSync(path.join(dir, "c.pem")) };
    const server = https.createServer({ ...creds, SNICallback: (name, cb) => { sni = name; cb(null, tls.createSecureContext(creds)); } }, (_q, res) => {
      requests++;
      res.writeHead(200).end();
    });
    server.on("tlsClientError", () => undefined);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await post(`https://hooks.voketag.test:${port}/`, { resolve: async () => ["127.0.0.1"] });
      // The self-signed certificate is refused: nothing is sent to a receiver we cannot authenticate.
      expect(r.ok).toBe(false);
      expect(r.error).toMatch(/self[- ]signed/i);
      expect(requests).toBe(0);
      expect(sni).toBe("hooks.voketag.test");
    } finally {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
