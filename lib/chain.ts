// The chain client: everything VokeTag asks of an EVM chain, behind one small interface, so the
// in-process dev chain and a JSON-RPC node are interchangeable (and tests can point at either).
// Reads go straight to JSON-RPC (ethers' provider caches the block number and would hide a reorg
// for a moment); ethers is used to sign. Signing and broadcasting are separate steps so the anchor
// service can persist a signed transaction (and its nonce) before anything leaves the process.
import { ethers } from "ethers";
import { httpJsonRpc } from "./json-rpc";

export interface AnchorReceipt {
  txHash: string;
  blockNumber: number;
  blockHash: string;
  status: number;
  gasUsed: bigint;
  effectiveGasPrice: bigint;
}

export interface ChainTx {
  hash: string;
  from: string;
  to: string | null;
  data: string;
  nonce: number;
  /** null while the transaction waits in a mempool */
  blockNumber: number | null;
}

export interface Fees {
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

export interface SignedTx extends Fees {
  hash: string;
  /** 0x-hex of the signed transaction, ready for eth_sendRawTransaction */
  raw: string;
  nonce: number;
  gasLimit: bigint;
}

export interface ChainClient {
  readonly address: string;
  /** Where the chain is: "in-process dev chain" or the RPC URL (without credentials). */
  readonly endpoint: string;
  chainId(): Promise<number>;
  blockNumber(): Promise<number>;
  balanceWei(): Promise<bigint>;
  /** Next nonce counting transactions waiting in the node's mempool. */
  pendingNonce(): Promise<number>;
  /** Next nonce after the last mined transaction. */
  minedNonce(): Promise<number>;
  /** What the node suggests paying now (EIP-1559). */
  feeData(): Promise<Fees>;
  /** Signs a transaction to our own address carrying `data`; sends nothing. */
  signData(data: string, opts: Fees & { nonce: number }): Promise<SignedTx>;
  /** eth_sendRawTransaction; a node that already has the transaction counts as success. */
  broadcast(raw: string): Promise<string>;
  /** signData + broadcast with the node's fees (tests, benchmarks). */
  sendData(data: string, opts: { nonce: number } & Partial<Fees>): Promise<string>;
  receipt(txHash: string): Promise<AnchorReceipt | null>;
  transaction(txHash: string): Promise<ChainTx | null>;
  /** Raw JSON-RPC: reads, and dev-chain controls such as evm_snapshot in tests. */
  request(method: string, params?: unknown[]): Promise<any>;
  close(): Promise<void>;
}

const hexNum = (v: unknown): number => Number(BigInt(v as string));
const hexBig = (v: unknown): bigint => (v === null || v === undefined ? 0n : BigInt(v as string));

class RpcChainClient implements ChainClient {
  readonly address: string;
  private readonly wallet: ethers.Wallet;
  private cachedChainId: number | null = null;

  constructor(
    private readonly send: (method: string, params: unknown[]) => Promise<any>,
    privateKey: string,
    readonly endpoint: string,
    private readonly onClose?: () => Promise<void>,
  ) {
    // No provider on the wallet: signing never needs the network.
    this.wallet = new ethers.Wallet(privateKey);
    this.address = this.wallet.address;
  }

  request(method: string, params: unknown[] = []) {
    return this.send(method, params);
  }
  async chainId() {
    if (this.cachedChainId === null) this.cachedChainId = hexNum(await this.send("eth_chainId", []));
    return this.cachedChainId;
  }
  async blockNumber() {
    return hexNum(await this.send("eth_blockNumber", []));
  }
  async balanceWei() {
    return hexBig(await this.send("eth_getBalance", [this.address, "latest"]));
  }
  async pendingNonce() {
    return hexNum(await this.send("eth_getTransactionCount", [this.address, "pending"]));
  }
  async minedNonce() {
    return hexNum(await this.send("eth_getTransactionCount", [this.address, "latest"]));
  }
  async feeData(): Promise<Fees> {
    const [block, tipHex] = await Promise.all([
      this.send("eth_getBlockByNumber", ["latest", false]),
      this.send("eth_maxPriorityFeePerGas", []).catch(() => null),
    ]);
    const tip = tipHex ? hexBig(tipHex) : 1_000_000_000n;
    if (block?.baseFeePerGas) {
      // The usual wallet rule: room for the base fee to double before the transaction is mined.
      return { maxFeePerGas: 2n * hexBig(block.baseFeePerGas) + tip, maxPriorityFeePerGas: tip };
    }
    const price = hexBig(await this.send("eth_gasPrice", []));
    return { maxFeePerGas: price > tip ? price : tip, maxPriorityFeePerGas: tip };
  }
  async signData(data: string, opts: Fees & { nonce: number }): Promise<SignedTx> {
    const gas = hexBig(await this.send("eth_estimateGas", [{ from: this.address, to: this.address, data }]));
    const tx: ethers.TransactionRequest = {
      type: 2,
      chainId: await this.chainId(),
      to: this.address,
      data,
      value: 0n,
      nonce: opts.nonce,
      gasLimit: gas,
      maxFeePerGas: opts.maxFeePerGas,
      maxPriorityFeePerGas: opts.maxPriorityFeePerGas,
    };
    const raw = await this.wallet.signTransaction(tx);
    return { hash: ethers.keccak256(raw), raw, nonce: opts.nonce, gasLimit: gas, maxFeePerGas: opts.maxFeePerGas, maxPriorityFeePerGas: opts.maxPriorityFeePerGas };
  }
  async broadcast(raw: string) {
    const hash = ethers.keccak256(raw);
    try {
      await this.send("eth_sendRawTransaction", [raw]);
    } catch (err) {
      if (classifyChainError(err) !== "known") throw err;
    }
    return hash;
  }
  async sendData(data: string, opts: { nonce: number } & Partial<Fees>) {
    const fees = opts.maxFeePerGas && opts.maxPriorityFeePerGas ? (opts as Fees) : await this.feeData();
    const signed = await this.signData(data, { nonce: opts.nonce, maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas });
    return this.broadcast(signed.raw);
  }
  async receipt(txHash: string): Promise<AnchorReceipt | null> {
    const r = await this.send("eth_getTransactionReceipt", [txHash]);
    if (!r || r.blockNumber === null || r.blockNumber === undefined) return null;
    return {
      txHash: r.transactionHash,
      blockNumber: hexNum(r.blockNumber),
      blockHash: r.blockHash,
      status: r.status === undefined || r.status === null ? 1 : hexNum(r.status),
      gasUsed: hexBig(r.gasUsed),
      effectiveGasPrice: hexBig(r.effectiveGasPrice ?? r.gasPrice),
    };
  }
  async transaction(txHash: string): Promise<ChainTx | null> {
    const t = await this.send("eth_getTransactionByHash", [txHash]);
    if (!t) return null;
    return {
      hash: t.hash,
      from: ethers.getAddress(t.from),
      to: t.to ? ethers.getAddress(t.to) : null,
      data: t.input ?? t.data ?? "0x",
      nonce: hexNum(t.nonce),
      blockNumber: t.blockNumber === null || t.blockNumber === undefined ? null : hexNum(t.blockNumber),
    };
  }
  async close() {
    await this.onClose?.();
  }
}

/** Strips credentials from an RPC URL before it is logged or shown. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) u.username = u.password = "";
    // Hosted RPCs put the API key in the path or query: keep only the origin.
    return u.pathname.length > 1 || u.search ? `${u.origin}/…` : u.origin;
  } catch {
    return "(invalid URL)";
  }
}

/**
 * A JSON-RPC node over HTTP. Nothing is asked of the node here: a node that is down when VokeTag
 * starts fails the first call (the anchor service retries), it does not stop the start.
 */
export function connectRpc(url: string, privateKey: string, opts: { timeoutMs?: number } = {}): ChainClient {
  return new RpcChainClient(httpJsonRpc(url, { timeoutMs: opts.timeoutMs ?? 10_000 }), privateKey, redactUrl(url));
}

/** Wraps an EIP-1193 provider (the in-process dev chain) in the same client. */
export function connectEip1193(eip1193: { request(a: { method: string; params?: unknown[] }): Promise<any> }, privateKey: string, onClose?: () => Promise<void>): ChainClient {
  const send = async (method: string, params: unknown[]) => {
    try {
      return await eip1193.request({ method, params });
    } catch (err) {
      const e = err as { message?: string; code?: number; data?: unknown };
      throw Object.assign(new Error(`RPC ${method}: ${e?.message ?? String(err)}`), { code: "RPC_ERROR", rpcCode: e?.code, rpcData: e?.data });
    }
  };
  return new RpcChainClient(send, privateKey, "in-process dev chain", onClose);
}

// ---------------------------------------------------------------------------------------------
// Policy: how failures are read and how fees move. Pure, unit-tested in test/unit/chain-policy.test.ts.

/**
 * unavailable — the node could not be reached or answered 5xx/timeout: nothing is known, retry later;
 * known — the node already has this very transaction; nonce_too_low — the nonce is used up (by this
 * transaction if it was mined, or by another); underpriced — a replacement did not pay enough more;
 * rejected — the node refused the transaction for any other reason (e.g. insufficient funds).
 */
export type ChainErrorKind = "unavailable" | "known" | "nonce_too_low" | "underpriced" | "rejected";

const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ECONNABORTED",
  "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_CLOSED", "TIMEOUT", "NETWORK_ERROR", "SERVER_ERROR",
]);

function errorText(err: any, depth = 0): string {
  if (!err || depth > 3) return "";
  const own = [err.message, err.shortMessage, err.error?.message, err.info?.error?.message].filter((x) => typeof x === "string").join(" | ");
  return `${own} ${errorText(err.cause, depth + 1)}`;
}

function errorCodes(err: any, depth = 0): string[] {
  if (!err || depth > 3) return [];
  return [err.code, err.name, err.errno].filter((x) => typeof x === "string").concat(errorCodes(err.cause, depth + 1));
}

export function classifyChainError(err: unknown): ChainErrorKind {
  const text = errorText(err);
  const codes = errorCodes(err);
  if (/already known|known transaction|already imported|alreadyknown|transaction already exists/i.test(text)) return "known";
  if (codes.includes("NONCE_EXPIRED") || /nonce too low|doesn't have the correct nonce|nonce has already been used|nonce is too low|invalid nonce/i.test(text)) return "nonce_too_low";
  if (codes.includes("REPLACEMENT_UNDERPRICED") || /underpriced|replacement fee too low|fee too low/i.test(text)) return "underpriced";
  if (codes.includes("AbortError") || codes.includes("TimeoutError") || codes.some((c) => NETWORK_CODES.has(c))) return "unavailable";
  if (/ECONNREFUSED|ECONNRESET|socket hang up|fetch failed|timed? ?out|network error|HTTP 5\d\d|server response 5\d\d/i.test(text)) return "unavailable";
  return "rejected";
}

/** The short reason kept with a period (and shown in dead letters). */
export function chainErrorReason(err: unknown): string {
  const text = errorText(err).replace(/\s+/g, " ").trim() || String(err);
  return text.length > 500 ? text.slice(0, 500) + "…" : text;
}

export const GWEI = 1_000_000_000n;

/** First fees for a transaction: the node's suggestion, never above the cap. */
export function cappedFees(suggested: Fees, capWei: bigint): Fees {
  const maxFeePerGas = suggested.maxFeePerGas < capWei ? suggested.maxFeePerGas : capWei;
  const maxPriorityFeePerGas = suggested.maxPriorityFeePerGas < maxFeePerGas ? suggested.maxPriorityFeePerGas : maxFeePerGas;
  return { maxFeePerGas, maxPriorityFeePerGas };
}

// Nodes accept a replacement only if it pays at least 10% more (geth's and ganache's rule) on both
// the fee cap and the tip; 12.5% leaves room for integer rounding.
export const REPLACEMENT_BUMP_PER_MILLE = 125n;
const MIN_BUMP_PER_MILLE = 100n;

const bump = (x: bigint) => x + (x * REPLACEMENT_BUMP_PER_MILLE + 999n) / 1000n;
const max = (a: bigint, b: bigint) => (a > b ? a : b);
const min = (a: bigint, b: bigint) => (a < b ? a : b);

/**
 * Fees for a replacement of a transaction stuck with `previous`: at least 12.5% more on both the fee
 * cap and the tip (or today's suggestion if that is higher), capped at `capWei`. null when the cap
 * leaves no room for the 10% every node requires: the transaction then waits as it is.
 */
export function replacementFees(previous: Fees, suggested: Fees, capWei: bigint): Fees | null {
  const maxFeePerGas = min(max(bump(previous.maxFeePerGas), suggested.maxFeePerGas), capWei);
  const maxPriorityFeePerGas = min(max(bump(previous.maxPriorityFeePerGas), suggested.maxPriorityFeePerGas), maxFeePerGas);
  const enough = (next: bigint, prev: bigint) => next * 1000n >= prev * (1000n + MIN_BUMP_PER_MILLE);
  if (!enough(maxFeePerGas, previous.maxFeePerGas) || !enough(maxPriorityFeePerGas, previous.maxPriorityFeePerGas)) return null;
  return { maxFeePerGas, maxPriorityFeePerGas };
}

/** Delay before retry `attempt` (1-based: the wait after the first failure is `baseSeconds`), doubling. */
export function backoffSeconds(attempt: number, baseSeconds: number): number {
  return baseSeconds * 2 ** Math.max(0, attempt - 1);
}
