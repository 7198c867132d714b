// A JSON-RPC proxy between the anchor nodes and the chain, to make the RPC fail the ways real ones
// do: unreachable (the port refuses connections), or an eth_sendRawTransaction whose answer is lost
// after the node accepted the transaction (the client cannot tell whether it went out), or a node
// that goes away right after accepting a transaction.
import http from "node:http";
import type { Socket } from "node:net";

export type ProxyMode = "pass" | "refuse" | "drop-send-response" | "down-after-send";

export interface RpcProxy {
  url: string;
  port: number;
  readonly mode: ProxyMode;
  counts: { requests: number; sends: number; droppedSendResponses: number; refusedPeriods: number };
  /** "down-after-send": how long (ms) the port stays closed after the send went through. */
  setMode(mode: ProxyMode, opts?: { downMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function startRpcProxy(target: string, port = 0): Promise<RpcProxy> {
  let mode: ProxyMode = "pass";
  let downMs = 5000;
  const sockets = new Set<Socket>();
  const counts = { requests: 0, sends: 0, droppedSendResponses: 0, refusedPeriods: 0 };
  let listening = false;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => void relay());
    const relay = async () => {
      counts.requests++;
      const body = Buffer.concat(chunks);
      const isSend = body.includes("eth_sendRawTransaction");
      if (isSend) counts.sends++;
      let upstream: Response;
      try {
        upstream = await fetch(target, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(15_000) });
      } catch {
        // The chain behind us is down: to the client that is a dead connection, like no proxy at all.
        return void req.socket.destroy();
      }
      const text = await upstream.text();
      if (isSend && mode === "drop-send-response") {
        // The chain has the transaction; the client never hears so.
        counts.droppedSendResponses++;
        mode = "pass";
        return void req.socket.destroy();
      }
      if (isSend && mode === "down-after-send") {
        mode = "pass";
        // Once the answer is out, the node goes away for a while.
        res.once("finish", () => void proxy.setMode("refuse").then(() => setTimeout(() => void proxy.setMode("pass"), downMs)));
      }
      res.writeHead(upstream.status, { "content-type": "application/json" }).end(text);
    };
  });
  server.keepAliveTimeout = 1000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(p, "127.0.0.1", () => {
        server.off("error", reject);
        listening = true;
        resolve((server.address() as any).port);
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      if (!listening) return resolve();
      listening = false;
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  const actualPort = await listen(port);

  const proxy: RpcProxy = {
    url: `http://127.0.0.1:${actualPort}`,
    port: actualPort,
    get mode() {
      return mode;
    },
    counts,
    async setMode(next, opts = {}) {
      if (opts.downMs) downMs = opts.downMs;
      mode = next;
      if (next === "refuse") {
        counts.refusedPeriods++;
        await unlisten();
      } else if (!listening) await listen(actualPort);
    },
    async close() {
      await unlisten();
    },
  };
  return proxy;
}
