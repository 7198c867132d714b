// A real webhook receiver on loopback for the webhooks suites: records every request, answers as
// the test says (a status, a hang, a dropped socket), and can go away and come back on its port.
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface Received {
  n: number;
  at: number;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export type Answer = { status: number; headers?: Record<string, string>; body?: string } | "hang" | "drop";
export type Handler = (r: Received) => Answer | Promise<Answer>;

export interface Receiver {
  port: number;
  url(path?: string): string;
  received: Received[];
  setHandler(h: Handler): void;
  /** Stops listening and drops open connections: senders get connection refused. */
  goAway(): Promise<void>;
  /** Listens again on the same port. */
  comeBack(): Promise<void>;
  close(): Promise<void>;
  /** Resolves once `pred` holds for the requests so far. */
  waitFor(pred: (all: Received[]) => boolean, timeoutMs?: number): Promise<Received[]>;
}

export async function startReceiver(handler: Handler = () => ({ status: 200 })): Promise<Receiver> {
  let h = handler;
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  const waiters: (() => void)[] = [];
  const make = () => {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", async () => {
        const r: Received = {
          n: received.length + 1,
          at: Date.now(),
          path: req.url || "/",
          headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)])),
          body: Buffer.concat(chunks).toString("utf8"),
        };
        received.push(r);
        waiters.splice(0).forEach((w) => w());
        const a = await h(r);
        if (a === "hang") return;
        if (a === "drop") return void req.socket.destroy();
        res.writeHead(a.status, a.headers ?? {}).end(a.body ?? "");
      });
    });
    server.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    return server;
  };
  let server = make();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  let listening = true;
  const goAway = async () => {
    if (!listening) return;
    listening = false;
    await new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
  };
  return {
    port,
    url: (p = "/hook") => `http://127.0.0.1:${port}${p}`,
    received,
    setHandler: (next) => (h = next),
    goAway,
    async comeBack() {
      if (listening) return;
      server = make();
      await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
      listening = true;
    },
    close: goAway,
    async waitFor(pred, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      while (!pred(received)) {
        if (Date.now() > end) throw new Error(`receiver: condition not met in ${timeoutMs} ms after ${received.length} request(s)`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
      return received;
    },
  };
}
