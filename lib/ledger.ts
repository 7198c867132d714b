// The scan ledger's hash chain. Each entry commits to its predecessor:
//   hash_n = SHA-256(bytes(hash_{n-1}) ‖ canonicalBytes(entry_n)),  hash_0 = GENESIS_HASH,
// so editing, deleting, reordering or inserting any entry changes every later hash, and anchoring
// the head hash on chain freezes everything before it. seq starts at 1 after the virtual genesis
// link { seq: 0, hash: GENESIS_HASH }.
//
// Partitioning: one chain means one head row that every append must read and update in the same
// transaction, so appends from every node of the cluster would queue behind that row's lock.
// The ledger is therefore many independent chains (partitionFor(tag id) picks one); appends to
// different partitions never wait for each other, and the anchor commits every partition's head.
import { createHash } from "node:crypto";
import { canonicalBytes } from "./canonical";

export const GENESIS_HASH = "0".repeat(64);
export const GENESIS_SEQ = 0;

export interface ChainLink {
  seq: number;
  hash: string;
}

export interface LedgerRow {
  /** pg returns bigint columns as strings; both forms are accepted. */
  seq: number | string;
  prev_hash: string;
  hash: string;
  entry: object;
}

export type BreakReason = "gap" | "fork" | "bad_hash" | "bad_prev";
export type ChainOk = { ok: true; count: number; head: ChainLink | null };
export type ChainBroken = { ok: false; seq: number; reason: BreakReason; detail: string };
export type ChainResult = ChainOk | ChainBroken;

const HEX64 = /^[0-9a-f]{64}$/;

export function isHash(v: unknown): v is string {
  return typeof v === "string" && HEX64.test(v);
}

/** hex SHA-256(prevHash as 32 raw bytes ‖ canonical JSON of entry). */
export function ledgerEntryHash(prevHash: string, entry: object): string {
  // Lower-case only: hashes are compared as strings, so one spelling per value.
  if (!isHash(prevHash)) throw new TypeError("ledgerEntryHash: prevHash must be 64 lower-case hex characters");
  return createHash("sha256").update(Buffer.from(prevHash, "hex")).update(canonicalBytes(entry)).digest("hex");
}

/** The row to insert after `head` (null = empty chain). */
export function nextLedgerRow<E extends object>(head: ChainLink | null, entry: E): { seq: number; prev_hash: string; hash: string; entry: E } {
  const prev = head ?? { seq: GENESIS_SEQ, hash: GENESIS_HASH };
  return { seq: prev.seq + 1, prev_hash: prev.hash, hash: ledgerEntryHash(prev.hash, entry), entry };
}

function toSeq(v: unknown): number {
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isSafeInteger(n) ? n : NaN;
}

/**
 * Checks one row against the last verified link. Returns null when it extends the chain.
 * The failure's seq is the first position that can no longer be trusted: for a gap, the first
 * missing seq; otherwise the row's own seq. Everything before it verified.
 */
function checkLink(prev: ChainLink, row: LedgerRow): ChainBroken | null {
  const seq = toSeq(row?.seq);
  const expected = prev.seq + 1;
  if (Number.isNaN(seq)) return { ok: false, seq: expected, reason: "gap", detail: `seq ${JSON.stringify(row?.seq)} is not an integer; expected ${expected}` };
  if (seq > expected) {
    const missing = seq - expected === 1 ? `${expected} is` : `${expected}..${seq - 1} are`;
    return { ok: false, seq: expected, reason: "gap", detail: `expected seq ${expected}, found ${seq}: entries ${missing} missing` };
  }
  if (seq < expected) {
    // A second row for a position already taken: two histories claim the same place.
    const same = seq === prev.seq && row.hash === prev.hash ? " (an identical copy)" : "";
    return { ok: false, seq, reason: "fork", detail: `seq ${seq} appears again after seq ${prev.seq}${same}: the chain has two versions of this position` };
  }
  if (row.prev_hash !== prev.hash) {
    return { ok: false, seq, reason: "bad_prev", detail: `prev_hash ${String(row.prev_hash)} does not match the hash of seq ${prev.seq} (${prev.hash})` };
  }
  if (!isHash(row.hash)) return { ok: false, seq, reason: "bad_hash", detail: `hash ${JSON.stringify(row.hash)} is not 64 lower-case hex characters` };
  let computed: string;
  try {
    computed = ledgerEntryHash(prev.hash, row.entry);
  } catch (e) {
    return { ok: false, seq, reason: "bad_hash", detail: `entry cannot be hashed: ${(e as Error).message}` };
  }
  if (computed !== row.hash) {
    return { ok: false, seq, reason: "bad_hash", detail: `stored hash ${row.hash} but the entry hashes to ${computed}: the entry was altered` };
  }
  return null;
}

function startLink(start: ChainLink | undefined): ChainLink {
  if (start === undefined) return { seq: GENESIS_SEQ, hash: GENESIS_HASH };
  const seq = toSeq(start.seq);
  if (Number.isNaN(seq) || seq < 0 || !isHash(start.hash)) throw new TypeError("verifyChain: start must be { seq: integer >= 0, hash: 64 hex }");
  return { seq, hash: start.hash };
}

/**
 * Verifies rows in seq order, from genesis or from `start` (the last link already trusted, e.g.
 * an anchored head or the end of the previous page). Reports the first broken link.
 * On success `head` is the last row's link (or `start` when there are no rows).
 */
export function verifyChain(entries: LedgerRow[], start?: ChainLink): ChainResult {
  let prev = startLink(start);
  for (const row of entries) {
    const broken = checkLink(prev, row);
    if (broken) return broken;
    prev = { seq: prev.seq + 1, hash: row.hash };
  }
  return { ok: true, count: entries.length, head: entries.length > 0 || start !== undefined ? prev : null };
}

/**
 * Streaming form of verifyChain for chains read page by page: push rows in seq order; the first
 * failure sticks, later rows are ignored. result() equals verifyChain over everything pushed.
 */
export class ChainVerifier {
  private prev: ChainLink;
  private readonly hasStart: boolean;
  private n = 0;
  private failure: ChainBroken | null = null;

  constructor(start?: ChainLink) {
    this.prev = startLink(start);
    this.hasStart = start !== undefined;
  }

  /** Returns the failure (now or earlier), or null while the chain holds. */
  push(row: LedgerRow): ChainBroken | null {
    if (this.failure) return this.failure;
    const broken = checkLink(this.prev, row);
    if (broken) return (this.failure = broken);
    this.prev = { seq: this.prev.seq + 1, hash: row.hash };
    this.n++;
    return null;
  }

  pushAll(rows: Iterable<LedgerRow>): ChainBroken | null {
    for (const row of rows) if (this.push(row)) break;
    return this.failure;
  }

  get ok(): boolean {
    return this.failure === null;
  }

  /** Rows verified so far. */
  get count(): number {
    return this.n;
  }

  /** Last verified link: where the next page (or the next append) continues. */
  get head(): ChainLink | null {
    return this.n > 0 || this.hasStart ? { ...this.prev } : null;
  }

  result(): ChainResult {
    return this.failure ?? { ok: true, count: this.n, head: this.head };
  }
}

/** Stable partition in [0, partitions) for a key (tag id): first 4 bytes of SHA-256, big-endian, mod n. */
export function partitionFor(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 0xffffffff) throw new RangeError("partitionFor: partitions must be an integer in 1..2^32-1");
  return createHash("sha256").update(key, "utf8").digest().readUInt32BE(0) % partitions;
}
