// The product proof document ("voketag-proof/1") and its verification. A document carries everything
// needed to check a product's registration offline (leaf → batch root → period root) and, with any
// public RPC, on chain (period root in the calldata of a transaction from VokeTag's address).
// docs/PROOFS.md is the normative description; keep the two in step.
import { decodeAnchorCalldata } from "./anchor-payload";
import { canonicalize, canonicalBytes } from "./canonical";
import { hashLeaf, indexFromProof, rootFromProof, type ProofStep } from "./merkle";

export const PROOF_VERSION = "voketag-proof/1";
export const ISSUER_NAME = "VokeTag";
// A tree deeper than this would need more than 2^64 leaves: longer paths are rejected unread.
export const MAX_PATH_STEPS = 64;

export interface ProductLeafFields {
  tag_id: string;
  tenant_id: string;
  batch_id: string;
  sku: string;
  name: string;
  serial: string;
  gtin: string | null;
  lot: string | null;
  /** Random hex (16 bytes at registration): without it, anyone holding proofs could test guesses of sibling products. */
  salt: string;
}

export interface ProofDocument {
  version: typeof PROOF_VERSION;
  product: ProductLeafFields;
  leaf_hash: string;
  batch: { id: string; root: string; leaf_count: number; path: ProofStep[] };
  period: { id: string; root: string; batch_leaf_hash: string; path: ProofStep[] };
  anchor: { chain_id: number; tx_hash: string; block_number: number; address: string; confirmations_required: number };
  issued_at: string;
  issuer: { name: typeof ISSUER_NAME; url?: string };
}

const HASH_RE = /^[0-9a-f]{64}$/;

function requireHash(value: string, what: string): string {
  if (typeof value !== "string" || !HASH_RE.test(value)) throw new TypeError(`${what} must be 64 lower-case hex characters`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Leaves. Every leaf is hashLeaf(canonical JSON of a typed object): the "type" member keeps a leaf
// of one kind from ever being read as another.

export function productLeafHash(p: ProductLeafFields): Buffer {
  return hashLeaf(Buffer.from(productLeafText(p), "utf8"));
}

/**
 * The canonical JSON of a product leaf, written out in its fixed (sorted) key order: the same bytes
 * as canonicalize() over the listed fields (a test checks it), without sorting keys per product —
 * registration hashes a million of them. Only the listed fields, so extra properties on a database
 * row never change the hash.
 */
export function productLeafText(p: ProductLeafFields): string {
  const fields = [p.tag_id, p.tenant_id, p.batch_id, p.sku, p.name, p.serial, p.salt];
  const optional = [p.gtin ?? null, p.lot ?? null];
  if (!fields.every((f) => typeof f === "string") || !optional.every((f) => f === null || typeof f === "string"))
    return canonicalize({ type: "product", tag_id: p.tag_id, tenant_id: p.tenant_id, batch_id: p.batch_id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin ?? null, lot: p.lot ?? null, salt: p.salt });
  const j = JSON.stringify;
  return `{"batch_id":${j(p.batch_id)},"gtin":${j(p.gtin ?? null)},"lot":${j(p.lot ?? null)},"name":${j(p.name)},"salt":${j(p.salt)},"serial":${j(p.serial)},"sku":${j(p.sku)},"tag_id":${j(p.tag_id)},"tenant_id":${j(p.tenant_id)},"type":"product"}`;
}

export function batchLeafHash(batchId: string, batchRootHex: string): Buffer {
  return hashLeaf(canonicalBytes({ type: "batch", batch_id: batchId, root: requireHash(batchRootHex, "batch root") }));
}

export function ledgerHeadLeafHash(head: { partition: string; seq: number; hash: string }): Buffer {
  return hashLeaf(canonicalBytes({ type: "ledger_head", partition: head.partition, seq: head.seq, hash: head.hash }));
}

// ---------------------------------------------------------------------------------------------
// Parsing.

export class ProofFormatError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid proof document: ${problems.join("; ")}`);
    this.name = "ProofFormatError";
    this.problems = problems;
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

class Checker {
  readonly problems: string[] = [];

  obj(parent: Obj, key: string, at: string): Obj {
    const v = parent[key];
    if (!isObj(v)) {
      this.problems.push(`${at}: expected an object`);
      return {};
    }
    return v;
  }

  str(parent: Obj, key: string, at: string, opts: { nullable?: boolean; nonEmpty?: boolean; re?: RegExp; reText?: string } = {}): string | null {
    const v = parent[key];
    if (v === null && opts.nullable) return null;
    if (typeof v !== "string") {
      this.problems.push(`${at}: expected a string${opts.nullable ? " or null" : ""}`);
      return "";
    }
    if (opts.nonEmpty && v.length === 0) this.problems.push(`${at}: must not be empty`);
    if (opts.re && !opts.re.test(v)) this.problems.push(`${at}: expected ${opts.reText}`);
    return v;
  }

  hash(parent: Obj, key: string, at: string): string {
    return this.str(parent, key, at, { re: HASH_RE, reText: "64 lower-case hex characters (no 0x)" }) ?? "";
  }

  int(parent: Obj, key: string, at: string, min: number): number {
    const v = parent[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      this.problems.push(`${at}: expected an integer ≥ ${min}`);
      return min;
    }
    return v;
  }

  path(parent: Obj, key: string, at: string): ProofStep[] {
    const v = parent[key];
    if (!Array.isArray(v)) {
      this.problems.push(`${at}: expected an array of steps`);
      return [];
    }
    if (v.length > MAX_PATH_STEPS) {
      this.problems.push(`${at}: more than ${MAX_PATH_STEPS} steps`);
      return [];
    }
    return v.map((step, i) => {
      const where = `${at}[${i}]`;
      if (!isObj(step)) {
        this.problems.push(`${where}: expected an object {position, hash}`);
        return { position: "left", hash: "" };
      }
      const position = step.position;
      if (position !== "left" && position !== "right") this.problems.push(`${where}.position: expected "left" or "right"`);
      return { position: position === "right" ? "right" : "left", hash: this.hash(step, "hash", `${where}.hash`) };
    });
  }
}

/**
 * Checks the shape of a proof document (already parsed JSON, or its text) and returns a clean copy
 * holding only the known fields. Throws ProofFormatError listing every problem found.
 */
export function parseProofDocument(json: unknown): ProofDocument {
  let input = json;
  if (typeof input === "string") {
    try {
      input = JSON.parse(input);
    } catch {
      throw new ProofFormatError(["document: not valid JSON"]);
    }
  }
  if (!isObj(input)) throw new ProofFormatError(["document: expected a JSON object"]);
  const c = new Checker();
  if (input.version !== PROOF_VERSION) c.problems.push(`version: expected "${PROOF_VERSION}"`);

  const p = c.obj(input, "product", "product");
  const product: ProductLeafFields = {
    tag_id: c.str(p, "tag_id", "product.tag_id", { nonEmpty: true })!,
    tenant_id: c.str(p, "tenant_id", "product.tenant_id", { nonEmpty: true })!,
    batch_id: c.str(p, "batch_id", "product.batch_id", { nonEmpty: true })!,
    sku: c.str(p, "sku", "product.sku")!,
    name: c.str(p, "name", "product.name")!,
    serial: c.str(p, "serial", "product.serial")!,
    gtin: c.str(p, "gtin", "product.gtin", { nullable: true }),
    lot: c.str(p, "lot", "product.lot", { nullable: true }),
    salt: c.str(p, "salt", "product.salt", { re: /^(?:[0-9a-f]{2}){16,}$/, reText: "lower-case hex of at least 16 bytes" })!,
  };
  const leaf_hash = c.hash(input, "leaf_hash", "leaf_hash");

  const b = c.obj(input, "batch", "batch");
  const batch = {
    id: c.str(b, "id", "batch.id", { nonEmpty: true })!,
    root: c.hash(b, "root", "batch.root"),
    leaf_count: c.int(b, "leaf_count", "batch.leaf_count", 1),
    path: c.path(b, "path", "batch.path"),
  };

  const pe = c.obj(input, "period", "period");
  const period = {
    id: c.str(pe, "id", "period.id", { nonEmpty: true })!,
    root: c.hash(pe, "root", "period.root"),
    batch_leaf_hash: c.hash(pe, "batch_leaf_hash", "period.batch_leaf_hash"),
    path: c.path(pe, "path", "period.path"),
  };

  const a = c.obj(input, "anchor", "anchor");
  const anchor = {
    chain_id: c.int(a, "chain_id", "anchor.chain_id", 1),
    tx_hash: c.str(a, "tx_hash", "anchor.tx_hash", { re: /^0x[0-9a-fA-F]{64}$/, reText: "0x and 64 hex characters" })!,
    block_number: c.int(a, "block_number", "anchor.block_number", 0),
    address: c.str(a, "address", "anchor.address", { re: /^0x[0-9a-fA-F]{40}$/, reText: "0x and 40 hex characters" })!,
    confirmations_required: c.int(a, "confirmations_required", "anchor.confirmations_required", 0),
  };

  const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
  const issued_at = c.str(input, "issued_at", "issued_at")!;
  if (typeof input.issued_at === "string" && (!ISO_DATE_TIME.test(issued_at) || Number.isNaN(Date.parse(issued_at)))) {
    c.problems.push("issued_at: expected an ISO 8601 date-time");
  }

  const i = c.obj(input, "issuer", "issuer");
  if (i.name !== ISSUER_NAME) c.problems.push(`issuer.name: expected "${ISSUER_NAME}"`);
  const issuer: ProofDocument["issuer"] = { name: ISSUER_NAME };
  if (i.url !== undefined) issuer.url = c.str(i, "url", "issuer.url", { re: /^https?:\/\/\S+$/, reText: "an http(s) URL" })!;

  if (c.problems.length) throw new ProofFormatError(c.problems);
  return { version: PROOF_VERSION, product, leaf_hash, batch, period, anchor, issued_at, issuer };
}

// ---------------------------------------------------------------------------------------------
// Assembly.

export interface ProofDocumentInput {
  product: ProductLeafFields;
  batch: { id: string; root: Buffer | string; leaf_count: number; path: ProofStep[] };
  period: { id: string; root: Buffer | string; path: ProofStep[] };
  anchor: { chain_id: number; tx_hash: string; block_number: number; address: string; confirmations_required: number };
  issued_at?: string | Date;
  issuer_url?: string;
}

const toHex = (v: Buffer | string): string => (Buffer.isBuffer(v) ? v.toString("hex") : v.replace(/^0x/i, "").toLowerCase());

/**
 * Assembles a document from stored facts: computes leaf_hash and batch_leaf_hash, normalises hex.
 * Checks the shape (ProofFormatError on bad input) but not the hashes: verifyProofDocument does that.
 */
export function buildProofDocument(input: ProofDocumentInput): ProofDocument {
  const batchRoot = toHex(input.batch.root);
  const issuedAt = input.issued_at ?? new Date();
  const doc = {
    version: PROOF_VERSION,
    product: { ...input.product, gtin: input.product.gtin ?? null, lot: input.product.lot ?? null },
    leaf_hash: productLeafHash(input.product).toString("hex"),
    batch: { id: input.batch.id, root: batchRoot, leaf_count: input.batch.leaf_count, path: input.batch.path },
    period: {
      id: input.period.id,
      root: toHex(input.period.root),
      batch_leaf_hash: HASH_RE.test(batchRoot) ? batchLeafHash(input.batch.id, batchRoot).toString("hex") : "",
      path: input.period.path,
    },
    anchor: { ...input.anchor, tx_hash: input.anchor.tx_hash.toLowerCase() },
    issued_at: issuedAt instanceof Date ? issuedAt.toISOString() : issuedAt,
    issuer: input.issuer_url === undefined ? { name: ISSUER_NAME } : { name: ISSUER_NAME, url: input.issuer_url },
  };
  return parseProofDocument(doc);
}

// ---------------------------------------------------------------------------------------------
// Verification.

export interface AnchorTransaction {
  chainId: number;
  from: string;
  to: string | null;
  /** 0x-hex calldata */
  data: string;
  /** null while pending */
  blockNumber: number | null;
  confirmations: number;
}

export interface ChainReader {
  getAnchorTransaction(txHash: string): Promise<null | AnchorTransaction>;
}

export interface ProofCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface VerifyOptions {
  /** Verify the hash chain only: the chain checks are left out instead of failing. */
  offline?: boolean;
  /** When given, the anchoring address must be one of these (e.g. from /.well-known/voketag.json). */
  trustedAddresses?: string[];
  /** Floor for the confirmations check, whatever the document asks for. */
  minConfirmations?: number;
}

export const HASH_CHECKS = ["leaf", "batch_path", "batch_leaf", "period_path"] as const;
export const CHAIN_CHECKS = ["transaction", "sender", "chain", "block", "confirmations"] as const;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs every check, in order, without stopping at the first failure. Throws ProofFormatError only
 * when `doc` is not a well-formed document; chain reader failures become failed checks.
 */
export async function verifyProofDocument(
  doc: ProofDocument,
  chain?: ChainReader,
  opts: VerifyOptions = {},
): Promise<{ valid: boolean; checks: ProofCheck[] }> {
  const d = parseProofDocument(doc);
  const checks: ProofCheck[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  const leaf = productLeafHash(d.product).toString("hex");
  add("leaf", leaf === d.leaf_hash, leaf === d.leaf_hash ? "product fields hash to leaf_hash" : `product fields hash to ${leaf}, not leaf_hash`);

  const index = indexFromProof(d.batch.leaf_count, d.batch.path);
  const batchRoot = rootFromProof(Buffer.from(d.leaf_hash, "hex"), d.batch.path).toString("hex");
  if (index === null) add("batch_path", false, `a path of ${d.batch.path.length} steps with these positions fits no leaf of a ${d.batch.leaf_count}-leaf tree`);
  else if (batchRoot !== d.batch.root) add("batch_path", false, `path from leaf_hash gives ${batchRoot}, not batch.root`);
  else add("batch_path", true, `leaf ${index} of ${d.batch.leaf_count} reaches batch.root`);

  const batchLeaf = batchLeafHash(d.batch.id, d.batch.root).toString("hex");
  if (d.product.batch_id !== d.batch.id) add("batch_leaf", false, `product.batch_id ${JSON.stringify(d.product.batch_id)} differs from batch.id`);
  else if (batchLeaf !== d.period.batch_leaf_hash) add("batch_leaf", false, `batch id and root hash to ${batchLeaf}, not period.batch_leaf_hash`);
  else add("batch_leaf", true, "batch id and root hash to period.batch_leaf_hash");

  const periodRoot = rootFromProof(Buffer.from(d.period.batch_leaf_hash, "hex"), d.period.path).toString("hex");
  add("period_path", periodRoot === d.period.root, periodRoot === d.period.root ? "path from batch_leaf_hash reaches period.root" : `path from batch_leaf_hash gives ${periodRoot}, not period.root`);

  if (chain) {
    let tx: AnchorTransaction | null = null;
    let failure: string | null = null;
    try {
      tx = await chain.getAnchorTransaction(d.anchor.tx_hash);
      if (!tx) failure = "transaction not found";
    } catch (e) {
      failure = `chain reader failed: ${errorMessage(e)}`;
    }
    if (!tx || failure) {
      for (const name of CHAIN_CHECKS) add(name, false, failure ?? "transaction not found");
    } else {
      const anchored = decodeAnchorCalldata(tx.data);
      if (!anchored) add("transaction", false, "calldata is not a VokeTag anchor (VOKETAG1 + 32 bytes)");
      else if (anchored.toString("hex") !== d.period.root) add("transaction", false, `transaction anchors ${anchored.toString("hex")}, not period.root`);
      else add("transaction", true, "transaction calldata anchors period.root");

      const from = String(tx.from).toLowerCase();
      const trusted = opts.trustedAddresses?.map((x) => x.toLowerCase());
      if (from !== d.anchor.address.toLowerCase()) add("sender", false, `sent by ${tx.from}, not anchor.address`);
      else if (trusted && !trusted.includes(from)) add("sender", false, `${tx.from} is not a trusted VokeTag anchoring address`);
      else add("sender", true, `sent by ${tx.from}${trusted ? " (trusted)" : ""}`);

      add("chain", tx.chainId === d.anchor.chain_id, tx.chainId === d.anchor.chain_id ? `chain ${tx.chainId}` : `transaction is on chain ${tx.chainId}, not ${d.anchor.chain_id}`);

      if (tx.blockNumber === null) add("block", false, "transaction is not mined yet");
      else add("block", tx.blockNumber === d.anchor.block_number, tx.blockNumber === d.anchor.block_number ? `block ${tx.blockNumber}` : `transaction is in block ${tx.blockNumber}, not ${d.anchor.block_number}`);

      const required = Math.max(d.anchor.confirmations_required, opts.minConfirmations ?? 0);
      add("confirmations", tx.confirmations >= required, `${tx.confirmations} confirmation(s), ${required} required`);
    }
  } else if (!opts.offline) {
    for (const name of CHAIN_CHECKS) add(name, false, "not checked: no chain reader");
  }

  return { valid: checks.every((c) => c.ok), checks };
}

const rpcNumber = (v: unknown): number | null => (v === null || v === undefined ? null : Number(BigInt(v as string)));

/**
 * ChainReader over any EVM JSON-RPC `send` (an HTTP endpoint through lib/json-rpc, or an EIP-1193
 * provider): eth_getTransactionByHash, eth_getTransactionReceipt, eth_blockNumber and eth_chainId,
 * exactly the four calls docs/PROOFS.md §8 names.
 */
export function jsonRpcChainReader(send: (method: string, params: unknown[]) => Promise<any>): ChainReader {
  return {
    async getAnchorTransaction(txHash: string) {
      const [tx, receipt, head, chainId] = await Promise.all([
        send("eth_getTransactionByHash", [txHash]),
        send("eth_getTransactionReceipt", [txHash]),
        send("eth_blockNumber", []),
        send("eth_chainId", []),
      ]);
      if (!tx) return null;
      const blockNumber = rpcNumber(receipt?.blockNumber) ?? rpcNumber(tx.blockNumber);
      const headNumber = rpcNumber(head) ?? 0;
      return {
        // The chain the endpoint serves is where the transaction was found.
        chainId: rpcNumber(chainId) ?? 0,
        from: String(tx.from),
        to: tx.to ?? null,
        data: tx.input ?? tx.data ?? "0x",
        blockNumber,
        // Head and receipt are read in parallel: a head that lags the receipt still counts the
        // transaction's own block, so confirmations can only be undercounted, never overcounted.
        confirmations: blockNumber === null ? 0 : Math.max(headNumber, blockNumber) - blockNumber + 1,
      };
    },
  };
}
