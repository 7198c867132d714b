// The embedded chain: a real EVM (ganache) inside the process, its state kept under the data dir.
// Chosen over Hardhat's EDR because ganache persists chain state to disk (the embedded default must
// survive a restart with its anchors intact) and serves the same chain over HTTP for tests of
// ANCHOR_RPC_URL; EDR keeps state only in memory. It sits behind ChainClient, so swapping is local.
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { ChainClient, connectEip1193 } from "./chain";

const FUNDING_WEI = "0x" + (10n ** 24n).toString(16); // 1,000,000 ETH of dev-chain gas money

function ganacheOptions(dbPath: string | null, privateKey: string, chainId: number) {
  return {
    logging: { quiet: true },
    chain: { chainId, hardfork: "shanghai" as const },
    wallet: { accounts: [{ secretKey: privateKey, balance: FUNDING_WEI }] },
    miner: { instamine: "eager" as const },
    ...(dbPath ? { database: { dbPath } } : {}),
  };
}

/**
 * ganache loads a native WebSocket server built for older Node ABIs and prints a warning when it
 * falls back to JavaScript; we never use its WebSocket side, so that warning is only noise.
 */
function loadGanache() {
  const { log, error, warn } = console;
  const quiet = (orig: (...a: unknown[]) => void) => (...a: unknown[]) => {
    const msg = String(a[0] ?? "");
    if (!msg.includes("µWS") && !msg.includes("Falling back to a NodeJS implementation")) orig(...a);
  };
  console.log = quiet(log);
  console.error = quiet(error);
  console.warn = quiet(warn);
  try {
    return require("ganache");
  } finally {
    console.log = log;
    console.error = error;
    console.warn = warn;
  }
}

/** The dev chain's anchoring key, made once and kept with the chain state. */
export function devChainKey(dataDir: string | null): string {
  if (!dataDir) return "0x" + crypto.randomBytes(32).toString("hex");
  const file = path.join(dataDir, "chain", "anchor.key");
  if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const key = "0x" + crypto.randomBytes(32).toString("hex");
  fs.writeFileSync(file, key + "\n", { mode: 0o600 });
  return key;
}

/** Starts the in-process chain; dataDir null keeps it in memory. */
export function startDevChain(opts: { dataDir: string | null; chainId: number; privateKey?: string }): ChainClient {
  const ganache = loadGanache();
  const key = opts.privateKey ?? devChainKey(opts.dataDir);
  let dbPath: string | null = null;
  if (opts.dataDir) {
    dbPath = path.join(opts.dataDir, "chain", "db");
    fs.mkdirSync(dbPath, { recursive: true });
  }
  const eip1193 = ganache.provider(ganacheOptions(dbPath, key, opts.chainId));
  return connectEip1193(eip1193, key, () => eip1193.disconnect());
}

/** The same chain served over HTTP on loopback: an RPC node for tests of ANCHOR_RPC_URL. */
export async function startDevChainServer(opts: { port: number; chainId: number; privateKey: string; dataDir?: string | null }) {
  const ganache = loadGanache();
  const dbPath = opts.dataDir ? path.join(opts.dataDir, "db") : null;
  if (dbPath) fs.mkdirSync(dbPath, { recursive: true });
  const server = ganache.server(ganacheOptions(dbPath, opts.privateKey, opts.chainId));
  await server.listen(opts.port, "127.0.0.1");
  return { url: `http://127.0.0.1:${opts.port}`, close: () => server.close() as Promise<void>, provider: server.provider };
}
