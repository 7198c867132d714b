// The chain client: everything VokeTag asks of an EVM chain, behind one small interface, so the
// in-process dev chain and a JSON-RPC node are interchangeable (and tests can point at either).
import { ethers } from "ethers";

export interface AnchorReceipt {
  blockNumber: number;
  blockHash: string;
  status: number;
}

export interface ChainTx {
  hash: string;
  from: string;
  to: string | null;
  data: string;
  nonce: number;
  blockNumber: number | null;
}

export interface ChainClient {
  readonly address: string;
  chainId(): Promise<number>;
  blockNumber(): Promise<number>;
  balanceWei(): Promise<bigint>;
  /** Next nonce counting pending transactions (what a restart resumes from). */
  pendingNonce(): Promise<number>;
  /** Nonce after the last mined transaction. */
  minedNonce(): Promise<number>;
  /** Sends `data` to our own address (calldata anchoring) with an explicit nonce and fee cap. */
  sendData(data: string, opts: { nonce: number; maxFeePerGas?: bigint; maxPriorityFeePerGas?: bigint }): Promise<string>;
  feeData(): Promise<{ maxFeePerGas: bigint; maxPriorityFeePerGas: bigint }>;
  receipt(txHash: string): Promise<AnchorReceipt | null>;
  transaction(txHash: string): Promise<ChainTx | null>;
  /** Raw JSON-RPC, for dev-chain controls such as evm_snapshot in tests. */
  request(method: string, params?: unknown[]): Promise<any>;
  readonly provider: ethers.Provider;
  close(): Promise<void>;
}

class EthersChainClient implements ChainClient {
  readonly address: string;
  private wallet: ethers.Wallet;
  constructor(
    readonly provider: ethers.JsonRpcApiProvider,
    privateKey: string,
    private onClose?: () => Promise<void>,
  ) {
    this.wallet = new ethers.Wallet(privateKey, provider);
    this.address = this.wallet.address;
  }
  async chainId() {
    return Number((await this.provider.getNetwork()).chainId);
  }
  blockNumber() {
    return this.provider.getBlockNumber();
  }
  balanceWei() {
    return this.provider.getBalance(this.address);
  }
  pendingNonce() {
    return this.provider.getTransactionCount(this.address, "pending");
  }
  minedNonce() {
    return this.provider.getTransactionCount(this.address, "latest");
  }
  async feeData() {
    const f = await this.provider.getFeeData();
    const tip = f.maxPriorityFeePerGas ?? 1_000_000_000n;
    return { maxFeePerGas: f.maxFeePerGas ?? (f.gasPrice ?? 1_000_000_000n) * 2n, maxPriorityFeePerGas: tip };
  }
  async sendData(data: string, opts: { nonce: number; maxFeePerGas?: bigint; maxPriorityFeePerGas?: bigint }) {
    const fees = opts.maxFeePerGas ? opts : { ...opts, ...(await this.feeData()) };
    const req: ethers.TransactionRequest = {
      to: this.address,
      data,
      nonce: opts.nonce,
      chainId: await this.chainId(),
      type: 2,
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    };
    req.gasLimit = await this.provider.estimateGas({ ...req, from: this.address });
    const signed = await this.wallet.signTransaction(req);
    const hash = ethers.keccak256(signed);
    await this.provider.send("eth_sendRawTransaction", [signed]);
    return hash;
  }
  async receipt(txHash: string) {
    const r = await this.provider.getTransactionReceipt(txHash);
    return r ? { blockNumber: r.blockNumber, blockHash: r.blockHash, status: r.status ?? 0 } : null;
  }
  async transaction(txHash: string) {
    const t = await this.provider.getTransaction(txHash);
    return t ? { hash: t.hash, from: t.from, to: t.to, data: t.data, nonce: t.nonce, blockNumber: t.blockNumber } : null;
  }
  request(method: string, params: unknown[] = []) {
    return this.provider.send(method, params);
  }
  async close() {
    this.provider.destroy();
    await this.onClose?.();
  }
}

/** A JSON-RPC node over HTTP. The chain id is read once, so a node that is down later fails calls fast. */
export async function connectRpc(url: string, privateKey: string): Promise<ChainClient> {
  const req = new ethers.FetchRequest(url);
  req.timeout = 10_000;
  const chainId = await rawChainId(url);
  const provider = new ethers.JsonRpcProvider(req, ethers.Network.from(chainId), {
    staticNetwork: ethers.Network.from(chainId),
    batchMaxCount: 1,
    polling: false,
  } as any);
  return new EthersChainClient(provider, privateKey);
}

async function rawChainId(url: string): Promise<number> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
    signal: AbortSignal.timeout(5000),
  });
  const body: any = await res.json();
  if (!body || typeof body.result !== "string") throw new Error(`eth_chainId failed at ${url}`);
  return Number(BigInt(body.result));
}

/** Wraps an EIP-1193 provider (the in-process dev chain) in the same client. */
export function connectEip1193(eip1193: ethers.Eip1193Provider, privateKey: string, chainId: number, onClose?: () => Promise<void>): ChainClient {
  const provider = new ethers.BrowserProvider(eip1193, ethers.Network.from(chainId), { staticNetwork: ethers.Network.from(chainId) } as any);
  return new EthersChainClient(provider, privateKey, onClose);
}
