// How the anchor service reads chain failures and moves fees: the pure policy in lib/chain.ts.
import http from "node:http";
import fc from "fast-check";
import { classifyChainError, cappedFees, replacementFees, backoffSeconds, redactUrl, GWEI } from "../../lib/chain";
import { httpJsonRpc, JsonRpcError } from "../../lib/json-rpc";

async function rpcFailure(answer: (res: http.ServerResponse) => void): Promise<unknown> {
  const srv = http.createServer((_req, res) => answer(res));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    await httpJsonRpc(`http://127.0.0.1:${(srv.address() as any).port}`, { timeoutMs: 300 })("eth_sendRawTransaction", ["0x00"]);
    throw new Error("expected a failure");
  } catch (err) {
    return err;
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
}

describe("classifyChainError", () => {
  it("an RPC that refuses connections, resets them, times out or answers 5xx is unavailable", async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as any).port;
    closed.close();
    const refused = await httpJsonRpc(`http://127.0.0.1:${port}`)("eth_blockNumber", []).catch((e) => e);
    expect(refused).toBeInstanceOf(JsonRpcError);
    expect(refused.message).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    expect(classifyChainError(refused)).toBe("unavailable");
    expect(classifyChainError(await rpcFailure((res) => res.socket!.destroy()))).toBe("unavailable");
    expect(classifyChainError(await rpcFailure(() => undefined))).toBe("unavailable"); // never answers: timeout
    expect(classifyChainError(await rpcFailure((res) => res.writeHead(502).end("<html>bad gateway</html>")))).toBe("unavailable");
    expect(classifyChainError(await rpcFailure((res) => res.writeHead(503, { "content-type": "application/json" }).end("{}")))).toBe("unavailable");
  });

  it("what the node answers is read from its message", async () => {
    const node = (message: string) => rpcFailure((res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: -32000, message } })));
    expect(classifyChainError(await node("insufficient funds for gas * price + value"))).toBe("rejected");
    expect(classifyChainError(await node("already known"))).toBe("known");
    expect(classifyChainError(await node("nonce too low: next nonce 7, tx nonce 5"))).toBe("nonce_too_low");
    expect(classifyChainError(await node("the tx doesn't have the correct nonce. account has nonce of: 2 tx has nonce of: 1"))).toBe("nonce_too_low"); // ganache
    expect(classifyChainError(await node("replacement transaction underpriced"))).toBe("underpriced");
    expect(classifyChainError(await node("max fee per gas less than block base fee"))).toBe("rejected");
    expect(classifyChainError(new Error("something else entirely"))).toBe("rejected");
    expect(classifyChainError(Object.assign(new Error("x"), { code: "NONCE_EXPIRED" }))).toBe("nonce_too_low");
  });
});

describe("fees", () => {
  const gwei = (n: number) => BigInt(Math.round(n * 1e9));

  it("first fees: the node's suggestion, the fee cap never exceeded, the tip never above the cap", () => {
    expect(cappedFees({ maxFeePerGas: gwei(3), maxPriorityFeePerGas: gwei(1) }, gwei(200))).toEqual({ maxFeePerGas: gwei(3), maxPriorityFeePerGas: gwei(1) });
    expect(cappedFees({ maxFeePerGas: gwei(300), maxPriorityFeePerGas: gwei(250) }, gwei(200))).toEqual({ maxFeePerGas: gwei(200), maxPriorityFeePerGas: gwei(200) });
  });

  it("a replacement pays at least 12.5% more on both, or today's price if higher, capped", () => {
    const prev = { maxFeePerGas: gwei(10), maxPriorityFeePerGas: gwei(2) };
    expect(replacementFees(prev, { maxFeePerGas: gwei(5), maxPriorityFeePerGas: gwei(1) }, gwei(200))).toEqual({ maxFeePerGas: gwei(11.25), maxPriorityFeePerGas: gwei(2.25) });
    expect(replacementFees(prev, { maxFeePerGas: gwei(40), maxPriorityFeePerGas: gwei(3) }, gwei(200))).toEqual({ maxFeePerGas: gwei(40), maxPriorityFeePerGas: gwei(3) });
    expect(replacementFees(prev, { maxFeePerGas: gwei(40), maxPriorityFeePerGas: gwei(3) }, gwei(11.5))).toEqual({ maxFeePerGas: gwei(11.5), maxPriorityFeePerGas: gwei(3) });
    // At the cap already: no replacement any node would accept.
    expect(replacementFees({ maxFeePerGas: gwei(200), maxPriorityFeePerGas: gwei(2) }, prev, gwei(200))).toBeNull();
    expect(replacementFees({ maxFeePerGas: gwei(195), maxPriorityFeePerGas: gwei(2) }, prev, gwei(200))).toBeNull(); // +2.6% only
  });

  it("property: any replacement offered is ≥10% more on both (what nodes require), ≤ the cap, tip ≤ fee cap", () => {
    const wei = fc.bigInt({ min: 1n, max: 1000n * GWEI });
    fc.assert(
      fc.property(wei, wei, wei, wei, wei, (fee, tipRaw, sFee, sTip, cap) => {
        const prev = { maxFeePerGas: fee, maxPriorityFeePerGas: tipRaw > fee ? fee : tipRaw };
        const next = replacementFees(prev, { maxFeePerGas: sFee, maxPriorityFeePerGas: sTip }, cap);
        // Refused exactly when the cap leaves no room for +10% on the fee cap (the tip, ≤ the fee cap, then follows).
        if (next === null) return cap * 100n < prev.maxFeePerGas * 110n;
        return (
          next.maxFeePerGas <= cap &&
          next.maxPriorityFeePerGas <= next.maxFeePerGas &&
          next.maxFeePerGas * 100n >= prev.maxFeePerGas * 110n &&
          next.maxPriorityFeePerGas * 100n >= prev.maxPriorityFeePerGas * 110n
        );
      }),
      { numRuns: 2000 },
    );
  });

  it("property: with room under the cap a replacement is always offered", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1000n, max: 100n * GWEI }), fc.bigInt({ min: 1000n, max: 100n * GWEI }), (fee, tip) => {
        const prev = { maxFeePerGas: fee + tip, maxPriorityFeePerGas: tip };
        return replacementFees(prev, { maxFeePerGas: 1n, maxPriorityFeePerGas: 1n }, (fee + tip) * 2n) !== null;
      }),
    );
  });
});

describe("backoff and redaction", () => {
  it("doubles from the base: 1 s, 2 s, 4 s", () => {
    expect([1, 2, 3].map((a) => backoffSeconds(a, 1))).toEqual([1, 2, 4]);
    expect([1, 2, 3].map((a) => backoffSeconds(a, 2))).toEqual([2, 4, 8]);
    expect(backoffSeconds(1, 0)).toBe(0);
  });

  it("never logs an RPC URL's credentials or API key", () => {
    expect(redactUrl("https://user:secret@rpc.example.com/v3/0123abcd?key=x")).toBe("https://rpc.example.com/…");
    expect(redactUrl("http://127.0.0.1:8545")).toBe("http://127.0.0.1:8545");
    expect(redactUrl("not a url")).toBe("(invalid URL)");
  });
});

describe("anchor settings (lib/config)", () => {
  const { loadConfig, ConfigError } = require("../../lib/config") as typeof import("../../lib/config");
  it("defaults, integer seconds, and the low-balance threshold in wei", () => {
    const a = loadConfig({}).anchor;
    expect(a).toMatchObject({ intervalSeconds: 60, confirmations: 1, maxFeeGwei: 200, pollSeconds: 5, stuckTimeoutSeconds: 300, retryBackoffSeconds: 2, lowBalanceWei: "50000000000000000" });
    const b = loadConfig({ ANCHOR_STUCK_TIMEOUT: "90", ANCHOR_LOW_BALANCE_WEI: "123456789012345678901234", ANCHOR_POLL_INTERVAL: "2" }).anchor;
    expect(b).toMatchObject({ stuckTimeoutSeconds: 90, lowBalanceWei: "123456789012345678901234", pollSeconds: 2 });
    expect(() => loadConfig({ ANCHOR_LOW_BALANCE_WEI: "0.05" })).toThrow(ConfigError);
    expect(() => loadConfig({ ANCHOR_STUCK_TIMEOUT: "1.5" })).toThrow(ConfigError);
    expect(() => loadConfig({ ANCHOR_STUCK_TIMEOUT: "0" })).toThrow(ConfigError);
  });
});
