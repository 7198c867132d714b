// A JSON-RPC proxy in front of the test's dev chain that behaves like a public node's mempool when
// asked to: it can hold transactions unmined (a "stuck" transaction, with geth's replacement rule:
// same nonce, ≥10% more on fee cap and tip), refuse connections (RPC down), drop the sockets of
// eth_sendRawTransaction before or after forwarding (a crash between persisting and sending, or a
// lost answer). ganache alone cannot do this: it mines every transaction it accepts, and mines
// same-nonce "replacements" side by side instead of replacing.
import http from "node:http";
import net from "node:net";
import { Transaction } from "ethers";

export interface HeldTx {
  hash: string;
  raw: string;
  from: string;
  nonce: number;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

export interface SentRaw {
  hash: string;
  nonce: number;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  outcome: "forwarded" | "held" | "replaced-held" | "underpriced" | "reset-before" | "reset-after";
}

export interface ChainMempool {
  url: string;
  port: number;
  /** Hold new transactions instead of forwarding them (they wait, unmined, like a stuck one). */
  hold(on: boolean): void;
  /** Forwards every held transaction to the chain (nonce order), which mines them. */
  release(): Promise<string[]>;
  held(): HeldTx[];
  /** Every eth_sendRawTransaction seen, in order. */
  sent: SentRaw[];
  /** Connections are reset at once, as if the node were down. */
  unreachable(on: boolean): void;
  /** eth_sendRawTransaction: "reset-before" never reaches the chain; "reset-after" reaches it but the answer is lost. */
  sendRawFault(fault: null | "reset-before" | "reset-after"): void;
  close(): Promise<void>;
}

const hex = (n: number | bigint) => "0x" + n.toString(16);

export async function startChainMempool(upstream: string, port = 0): Promise<ChainMempool> {
  let holding = false;
  let down = false;
  let fault: null | "reset-before" | "reset-after" = null;
  const pool = new Map<string, HeldTx>(); // key: from:nonce
  const sent: SentRaw[] = [];
  const sockets = new Set<net.Socket>();

  async function forward(body: unknown): Promise<any> {
    const res = await fetch(upstream, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return res.json();
  }

  const byHash = (h: string) => [...pool.values()].find((t) => t.hash.toLowerCase() === String(h).toLowerCase());

  async function handle(msg: any, socket: net.Socket): Promise<any | "reset"> {
    const { id, method, params = [] } = msg;
    const ok = (result: unknown) => ({ jsonrpc: "2.0", id, result });
    if (method === "eth_sendRawTransaction") {
      const raw = String(params[0]);
      const tx = Transaction.from(raw);
      const rec = { hash: tx.hash!, nonce: tx.nonce, maxFeePerGas: tx.maxFeePerGas ?? 0n, maxPriorityFeePerGas: tx.maxPriorityFeePerGas ?? 0n };
      if (fault === "reset-before") {
        sent.push({ ...rec, outcome: "reset-before" });
        return "reset";
      }
      const key = `${tx.from!.toLowerCase()}:${tx.nonce}`;
      const existing = pool.get(key);
      if (existing || holding) {
        if (existing) {
          // geth's rule: a replacement pays at least 10% more on both the fee cap and the tip.
          const enough = (n: bigint, o: bigint) => n * 100n >= o * 110n;
          if (!enough(rec.maxFeePerGas, existing.maxFeePerGas) || !enough(rec.maxPriorityFeePerGas, existing.maxPriorityFeePerGas)) {
            sent.push({ ...rec, outcome: "underpriced" });
            return { jsonrpc: "2.0", id, error: { code: -32000, message: "replacement transaction underpriced" } };
          }
        }
        pool.set(key, { ...rec, raw, from: tx.from! });
        sent.push({ ...rec, outcome: existing ? "replaced-held" : "held" });
        return ok(rec.hash);
      }
      const answer = await forward(msg);
      if (fault === "reset-after") {
        sent.push({ ...rec, outcome: "reset-after" });
        return "reset";
      }
      sent.push({ ...rec, outcome: "forwarded" });
      return answer;
    }
    if (method === "eth_getTransactionByHash") {
      const h = byHash(params[0]);
      if (h) {
        const tx = Transaction.from(h.raw);
        return ok({
          hash: h.hash,
          from: h.from.toLowerCase(),
          to: tx.to?.toLowerCase() ?? null,
          input: tx.data,
          nonce: hex(tx.nonce),
          value: hex(tx.value),
          gas: hex(tx.gasLimit),
          type: hex(tx.type ?? 2),
          chainId: hex(tx.chainId),
          maxFeePerGas: hex(h.maxFeePerGas),
          maxPriorityFeePerGas: hex(h.maxPriorityFeePerGas),
          blockHash: null,
          blockNumber: null,
          transactionIndex: null,
        });
      }
    }
    if (method === "eth_getTransactionReceipt" && byHash(params[0])) return ok(null);
    if (method === "eth_getTransactionCount" && params[1] === "pending") {
      const answer = await forward(msg);
      const from = String(params[0]).toLowerCase();
      const mine = [...pool.values()].filter((t) => t.from.toLowerCase() === from).map((t) => t.nonce + 1);
      if (answer.result && mine.length) answer.result = hex(Math.max(Number(BigInt(answer.result)), ...mine));
      return answer;
    }
    void socket;
    return forward(msg);
  }

  const server = http.createServer((req, res) => void serve(req, res));
  async function serve(req: http.IncomingMessage, res: http.ServerResponse) {
    if (down) return req.socket.destroy();
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const answer = Array.isArray(msg) ? await Promise.all(msg.map((m) => handle(m, req.socket))) : await handle(msg, req.socket);
      if (answer === "reset" || (Array.isArray(answer) && answer.includes("reset"))) return req.socket.destroy();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
    } catch (err) {
      if (res.headersSent || req.socket.destroyed) return;
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(String(err));
    }
  }
  server.on("connection", (s) => {
    if (down) return s.destroy();
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const actual = (server.address() as net.AddressInfo).port;

  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    sent,
    hold(on) {
      holding = on;
    },
    async release() {
      const all = [...pool.values()].sort((a, b) => a.nonce - b.nonce);
      pool.clear();
      const hashes: string[] = [];
      for (const t of all) {
        const r = await forward({ jsonrpc: "2.0", id: 1, method: "eth_sendRawTransaction", params: [t.raw] });
        if (r.error) throw new Error(`release ${t.hash}: ${r.error.message}`);
        hashes.push(t.hash);
      }
      return hashes;
    },
    held: () => [...pool.values()],
    unreachable(on) {
      down = on;
      if (on) for (const s of sockets) s.destroy();
    },
    sendRawFault(f) {
      fault = f;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
