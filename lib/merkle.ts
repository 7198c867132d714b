// SHA-256 Merkle tree with RFC 6962 domain separation, proofs, and a compact stored form.
//
// Hashing rules (the only ones; docs/PROOFS.md restates them for independent verifiers):
//   leaf hash  = SHA-256(0x00 || data)
//   inner node = SHA-256(0x01 || left || right)
// The prefixes keep a leaf from ever being passed off as an inner node (second-preimage attack).
//
// Odd-node rule: when a level has an odd number of nodes, its last node is PROMOTED UNCHANGED to the
// next level (never duplicated, never hashed alone). A proof therefore has no step for a level where
// the node was promoted. This yields exactly the RFC 6962 Merkle Tree Hash (split at the largest power
// of two below n) and the same tree as merkletreejs with hashLeaves:false and no duplicateOdd.
//
// Storage: every tree is kept flat — all levels concatenated, leaves first, root last, 32 bytes per
// node — so a service can keep it in one bytea column and answer any proof in O(log n) without
// rebuilding, and big trees are built without one JS object per node.
//
// Speed (bench/merkle.ts): hashLeaf/hashNode and every verification use lib/sha256 (node:crypto in Node). Building big
// trees hashes runs of inner nodes in a small WebAssembly module (4 nodes per SIMD step), which is
// self-tested against hashNode before first use, and splits the tree across worker threads. The
// level/promotion rule itself lives in one function (buildLevelRange) used by every path.
// No top-level `node:` imports: lib/proof (and so this file) is bundled for the browser verifier,
// where hashing falls back to lib/sha256's pure code and the builders below are never called.
import type { Worker } from "node:worker_threads";
import { sha256 as sha256Any, SHA256_IV, SHA256_K } from "./sha256";

export const HASH_ALGORITHM = "sha256";
export const HASH_BYTES = 32;
export const LEAF_PREFIX = 0x00;
export const NODE_PREFIX = 0x01;
// Level indices use 32-bit integer arithmetic; memory runs out long before this anyway.
export const MAX_LEAVES = 2 ** 31 - 1;

export interface MerkleTree {
  leafCount: number;
  /** levels[0] = leaf hashes, last level = [root]. */
  levels: Buffer[][];
  root: Buffer;
}

/** `position` is where the SIBLING sits: "left" → parent = H(0x01 || sibling || current). */
export type ProofStep = { position: "left" | "right"; hash: string };

const HEX64 = /^[0-9a-fA-F]{64}$/;

function sha256(data: Uint8Array): Buffer {
  const out = sha256Any(data);
  return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

/** A Node built-in, loaded only by the code paths that build trees (never in the browser bundle). */
function nodeBuiltin<T>(id: string): T {
  return (process as unknown as { getBuiltinModule(id: string): T }).getBuiltinModule(id);
}

// Reused input buffers: JS is single-threaded and sha256() does not retain its input.
const leafScratchPrefix = Buffer.from([LEAF_PREFIX]);
const nodeScratch = Buffer.alloc(1 + 2 * HASH_BYTES);
nodeScratch[0] = NODE_PREFIX;

export function hashLeaf(data: Buffer): Buffer {
  return sha256(Buffer.concat([leafScratchPrefix, data]));
}

export function hashNode(left: Buffer, right: Buffer): Buffer {
  if (left.length !== HASH_BYTES || right.length !== HASH_BYTES) throw new TypeError("hashNode: children must be 32 bytes");
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 1 + HASH_BYTES);
  return sha256(nodeScratch);
}

/** Node counts per level, leaves first: [n, ceil(n/2), …, 1]. */
export function levelSizes(leafCount: number): number[] {
  if (!Number.isSafeInteger(leafCount) || leafCount < 1) throw new RangeError("Merkle tree: at least one leaf is required");
  if (leafCount > MAX_LEAVES) throw new RangeError(`Merkle tree: more than ${MAX_LEAVES} leaves`);
  const sizes = [leafCount];
  for (let n = leafCount; n > 1; ) {
    n = (n + 1) >>> 1;
    sizes.push(n);
  }
  return sizes;
}

/** Byte offset of each level in the flat form, plus the total length as the last entry. */
function levelOffsets(sizes: number[]): number[] {
  const offsets = [0];
  for (const s of sizes) offsets.push(offsets[offsets.length - 1] + s * HASH_BYTES);
  return offsets;
}

/** Byte length of serializeTree() output for a tree of `leafCount` leaves. */
export function serializedTreeLength(leafCount: number): number {
  const offsets = levelOffsets(levelSizes(leafCount));
  return offsets[offsets.length - 1];
}

// ---------------------------------------------------------------------------------------------
// Bulk hashing of inner nodes in WebAssembly. node:crypto costs ~0.7-1 µs per call for a 65-byte
// input here, mostly per-call overhead; merkletreejs pays the same per node, so beating it by a
// wide margin needs many nodes per call. This module hashes a run of
// consecutive pairs in one call: SHA-256(prefix || left || right), exactly hashNode's rule, and is
// self-tested against hashNode (node:crypto) before first use; on any mismatch or error the trees
// are built with node:crypto instead. The module is emitted here from its description rather than
// shipped as an opaque binary, so what it computes can be read below.


// A node input is always 65 bytes, so its second SHA-256 block is byte 64 (right[31]), then 0x80,
// zeros and the bit length 520: 256 possible blocks. Their message schedules are precomputed, with
// K[t] already added, as 256 rows of 64 words at the start of the tree's memory.
const NODE_TABLE_BYTES = 256 * 64 * 4;
let nodeTable: Uint32Array | null = null;
function secondBlockTable(): Uint32Array {
  if (nodeTable) return nodeTable;
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  const table = new Uint32Array(256 * 64);
  for (let b = 0; b < 256; b++) {
    const w = new Array<number>(64).fill(0);
    w[0] = ((b << 24) | 0x800000) >>> 0;
    w[15] = (1 + 2 * HASH_BYTES) * 8;
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = (s1 + w[t - 7] + s0 + w[t - 16]) >>> 0;
    }
    for (let t = 0; t < 64; t++) table[b * 64 + t] = (SHA256_K[t] + w[t]) >>> 0;
  }
  return (nodeTable = table);
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
}
const wasmName = (s: string) => [...uleb(s.length), ...Buffer.from(s, "utf8")];
const wasmVec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const wasmSection = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];

type Expr = number[];

/** Instruction builders shared by the scalar (i32) and 4-lane (i32x4) emitters. */
interface Ops {
  c(v: number): Expr;
  add(a: Expr, b: Expr): Expr;
  xor(a: Expr, b: Expr): Expr;
  rotr(x: Expr, n: number): Expr; // x must be a plain local.get: it may be repeated
  shr(x: Expr, n: number): Expr;
  ch(e: Expr, f: Expr, g: Expr): Expr;
  maj(a: Expr, b: Expr, c: Expr): Expr;
  bswap(x: Expr): Expr;
}

const i32c = (v: number): Expr => [0x41, ...sleb(v)];
const localGet = (l: number): Expr => [0x20, ...uleb(l)];
const localSet = (l: number, e: Expr): Expr => [...e, 0x21, ...uleb(l)];
const memarg = (offset: number): number[] => [0, ...uleb(offset)]; // alignment hint 1: inputs are unaligned
const op = (code: number) => (a: Expr, b: Expr): Expr => [...a, ...b, code];
const simd = (code: number): number[] => [0xfd, ...uleb(code)];
const simdOp = (code: number) => (a: Expr, b: Expr): Expr => [...a, ...b, ...simd(code)];
const i32 = { add: op(0x6a), sub: op(0x6b), and: op(0x71), or: op(0x72), xor: op(0x73), shl: op(0x74), shr: op(0x76), rotl: op(0x77), rotr: op(0x78) };
const v128 = { and: simdOp(0x4e), or: simdOp(0x50), xor: simdOp(0x51), shl: simdOp(0xab), shr: simdOp(0xad), add: simdOp(0xae) };
const v128const = (lanes: number[]): Expr => [...simd(0x0c), ...lanes.flatMap((x) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24])];
const splat = (v: number): Expr => v128const([v, v, v, v]);

const scalarOps: Ops = {
  c: i32c,
  add: i32.add,
  xor: i32.xor,
  rotr: (x, n) => i32.rotr(x, i32c(n)),
  shr: (x, n) => i32.shr(x, i32c(n)),
  ch: (e, f, g) => i32.xor(i32.and(i32.xor(f, g), e), g),
  maj: (a, b, c) => i32.or(i32.and(a, b), i32.and(c, i32.or(a, b))),
  bswap: (x) => i32.or(i32.and(i32.rotl(x, i32c(8)), i32c(0x00ff00ff)), i32.and(i32.rotr(x, i32c(8)), i32c(0xff00ff00))),
};
const bitselect = (a: Expr, b: Expr, mask: Expr): Expr => [...a, ...b, ...mask, ...simd(0x52)]; // mask ? a : b, per bit
const simdOps: Ops = {
  c: splat,
  add: v128.add,
  xor: v128.xor,
  rotr: (x, n) => v128.or(v128.shr(x, i32c(n)), v128.shl(x, i32c(32 - n))),
  shr: (x, n) => v128.shr(x, i32c(n)),
  ch: (e, f, g) => bitselect(f, g, e),
  maj: (a, b, c) => bitselect(a, b, v128.xor(b, c)), // b where b == c, else a
  bswap: (x) => [...x, ...v128const([0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f]), ...simd(0x0e)], // i8x16.swizzle
};

/**
 * SHA-256 compression: 64 rounds (plus the message schedule when `schedule`), state in locals
 * a..h = A..A+7, schedule words in W..W+15. Returns the locals holding a..h afterwards (the names
 * rotate instead of the values moving).
 */
function emitRounds(o: Ops, emit: (e: Expr) => void, A: number, T1: number, W: number, kw: (t: number) => Expr, schedule: boolean): number[] {
  let r = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => A + i);
  const get = localGet;
  for (let t = 0; t < 64; t++) {
    if (schedule && t >= 16) {
      const w = (i: number) => W + (i & 15);
      const s0 = o.xor(o.xor(o.rotr(get(w(t - 15)), 7), o.rotr(get(w(t - 15)), 18)), o.shr(get(w(t - 15)), 3));
      const s1 = o.xor(o.xor(o.rotr(get(w(t - 2)), 17), o.rotr(get(w(t - 2)), 19)), o.shr(get(w(t - 2)), 10));
      emit(localSet(w(t), o.add(o.add(o.add(s1, get(w(t - 7))), s0), get(w(t)))));
    }
    const [a, b, c, d, e, f, g, h] = r;
    const sigma1 = o.xor(o.xor(o.rotr(get(e), 6), o.rotr(get(e), 11)), o.rotr(get(e), 25));
    emit(localSet(T1, o.add(o.add(o.add(get(h), sigma1), o.ch(get(e), get(f), get(g))), kw(t))));
    emit(localSet(d, o.add(get(d), get(T1))));
    const sigma0 = o.xor(o.xor(o.rotr(get(a), 2), o.rotr(get(a), 13)), o.rotr(get(a), 22));
    emit(localSet(h, o.add(o.add(get(T1), sigma0), o.maj(get(a), get(b), get(c)))));
    r = [h, a, b, c, d, e, f, g];
  }
  return r;
}

// Both functions take (src, dst, count, table) and hash pairs at src, src+64, … into dst, dst+32, …
const SRC = 0, DST = 1, COUNT = 2, TABLE = 3, P = 4;

/** nodes(src, dst, count, table): one node per iteration, plain i32 code. */
function emitScalarNodes(prefix: number): number[] {
  const o = scalarOps;
  const A = 5, T1 = 13, KW = 14, W = 15, S = 31;
  const code: number[] = [];
  const emit = (e: Expr) => {
    for (const b of e) code.push(b);
  };
  emit([0x02, 0x40, 0x03, 0x40]); // block, loop
  emit([...localGet(COUNT), 0x45, 0x0d, 1]); // br_if count == 0 → out
  emit(localSet(P, i32.sub(localGet(SRC), i32c(1)))); // word t of block 1 = bytes src+4t-1 .. src+4t+2
  for (let t = 0; t < 16; t++) {
    let w = o.bswap([...localGet(P), 0x28, ...memarg(4 * t)]);
    if (t === 0) w = i32.or(i32.and(w, i32c(0x00ffffff)), i32c(prefix << 24));
    emit(localSet(W + t, w));
  }
  for (let i = 0; i < 8; i++) emit(localSet(A + i, i32c(SHA256_IV[i])));
  let r = emitRounds(o, emit, A, T1, W, (t) => i32.add(i32c(SHA256_K[t]), localGet(W + (t & 15))), true);
  for (let i = 0; i < 8; i++) emit(localSet(S + i, i32.add(i32c(SHA256_IV[i]), localGet(r[i]))));
  // Block 2: the precomputed row for the input's last byte.
  emit(localSet(KW, i32.add(localGet(TABLE), i32.shl([...localGet(SRC), 0x2d, ...memarg(63)], i32c(8)))));
  for (let i = 0; i < 8; i++) emit(localSet(A + i, localGet(S + i)));
  r = emitRounds(o, emit, A, T1, W, (t) => [...localGet(KW), 0x28, ...memarg(4 * t)], false);
  for (let i = 0; i < 8; i++) emit([...localGet(DST), ...o.bswap(i32.add(localGet(S + i), localGet(r[i]))), 0x36, ...memarg(4 * i)]);
  emit(localSet(SRC, i32.add(localGet(SRC), i32c(64))));
  emit(localSet(DST, i32.add(localGet(DST), i32c(32))));
  emit(localSet(COUNT, i32.sub(localGet(COUNT), i32c(1))));
  emit([0x0c, 0, 0x0b, 0x0b, 0x0b]); // br loop; end loop; end block; end function
  return [...wasmVec([[...uleb(S + 8 - P), 0x7f]]), ...code];
}

/** nodes4(src, dst, groups, table): four consecutive nodes per iteration, one per i32x4 lane. */
function emitSimdNodes(prefix: number): number[] {
  const o = simdOps;
  const R = 5, A = 9, T1 = 17, X = 18, W = 19, S = 35; // R..R+3: table rows (i32); A..: v128
  const code: number[] = [];
  const emit = (e: Expr) => {
    for (const b of e) code.push(b);
  };
  // One 32-bit word from each of the 4 inputs (stride 64) at base+offset, lane j ← input j.
  const gather = (base: number, offset: (j: number) => number): Expr => [
    ...localGet(base),
    ...localGet(base),
    ...localGet(base),
    ...localGet(base),
    ...simd(0x5c), // v128.load32_zero
    ...memarg(offset(0)),
    ...[1, 2, 3].flatMap((j) => [...simd(0x56), ...memarg(offset(j)), j]), // v128.load32_lane
  ];
  emit([0x02, 0x40, 0x03, 0x40]);
  emit([...localGet(COUNT), 0x45, 0x0d, 1]);
  emit(localSet(P, i32.sub(localGet(SRC), i32c(1))));
  for (let t = 0; t < 16; t++) {
    let w = o.bswap(gather(P, (j) => 64 * j + 4 * t));
    if (t === 0) w = v128.or(v128.and(w, splat(0x00ffffff)), splat(prefix << 24));
    emit(localSet(W + t, w));
  }
  for (let i = 0; i < 8; i++) emit(localSet(A + i, splat(SHA256_IV[i])));
  let r = emitRounds(o, emit, A, T1, W, (t) => v128.add(splat(SHA256_K[t]), localGet(W + (t & 15))), true);
  for (let i = 0; i < 8; i++) emit(localSet(S + i, v128.add(splat(SHA256_IV[i]), localGet(r[i]))));
  for (let j = 0; j < 4; j++) emit(localSet(R + j, i32.add(localGet(TABLE), i32.shl([...localGet(SRC), 0x2d, ...memarg(64 * j + 63)], i32c(8)))));
  for (let i = 0; i < 8; i++) emit(localSet(A + i, localGet(S + i)));
  const rows = (t: number): Expr => [
    ...localGet(R + 3),
    ...localGet(R + 2),
    ...localGet(R + 1),
    ...localGet(R),
    ...simd(0x5c),
    ...memarg(4 * t),
    ...[1, 2, 3].flatMap((j) => [...simd(0x56), ...memarg(4 * t), j]),
  ];
  r = emitRounds(o, emit, A, T1, W, rows, false);
  for (let i = 0; i < 8; i++) {
    emit(localSet(X, o.bswap(v128.add(localGet(S + i), localGet(r[i])))));
    for (let j = 0; j < 4; j++) emit([...localGet(DST), ...localGet(X), ...simd(0x5a), ...memarg(32 * j + 4 * i), j]); // v128.store32_lane
  }
  emit(localSet(SRC, i32.add(localGet(SRC), i32c(4 * 64))));
  emit(localSet(DST, i32.add(localGet(DST), i32c(4 * 32))));
  emit(localSet(COUNT, i32.sub(localGet(COUNT), i32c(1))));
  emit([0x0c, 0, 0x0b, 0x0b, 0x0b]);
  return [...wasmVec([[...uleb(R + 4 - P), 0x7f], [...uleb(S + 8 - A), 0x7b]]), ...code];
}

/**
 * A module importing a shared memory env.mem and exporting nodes (and nodes4 when `withSimd`):
 * for each i, mem[dst+32i..+32) = SHA-256(prefix || mem[src+64i..+64)). Needs src ≥ 1 and the
 * second-block table at `table`.
 */
function emitNodeHasher(prefix: number, withSimd: boolean): Uint8Array {
  const bodies = withSimd ? [emitScalarNodes(prefix), emitSimdNodes(prefix)] : [emitScalarNodes(prefix)];
  const names = ["nodes", "nodes4"];
  const I32 = 0x7f;
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...wasmSection(1, wasmVec([[0x60, ...wasmVec([[I32], [I32], [I32], [I32]]), 0]])),
    ...wasmSection(2, wasmVec([[...wasmName("env"), ...wasmName("mem"), 0x02, 0x03, ...uleb(1), ...uleb(65536)]])),
    ...wasmSection(3, wasmVec(bodies.map(() => [0]))),
    ...wasmSection(7, wasmVec(bodies.map((_, i) => [...wasmName(names[i]), 0x00, i]))),
    ...wasmSection(10, wasmVec(bodies.map((b) => [...uleb(b.length), ...b]))),
  ]);
}

// Minimal typing of the WebAssembly global (tsconfig has no DOM lib).
interface WasmMemory {
  buffer: SharedArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
type NodesFn = (src: number, dst: number, count: number, table: number) => void;
/** nodes: one pair per count; nodes4 (SIMD, when available): four consecutive pairs per count. */
type WasmHasher = { nodes: NodesFn; nodes4?: NodesFn };

const WASM_PAGE = 65536;
// Tree bytes start after the table, so the first node's src-1 read stays inside the memory.
const WASM_TREE_BASE = NODE_TABLE_BYTES;
// Below this the per-tree memory and instance cost more than node:crypto (measured).
export const WASM_MIN_LEAVES = 256;

let wasmModule: object | null | undefined;

function wasmApi(): WasmApi | undefined {
  return (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
}

let nodeTableBytes: Uint8Array | null = null;
function writeSecondBlockTable(memory: WasmMemory): void {
  if (!nodeTableBytes) {
    // Little-endian, as WebAssembly reads it, whatever the host's byte order.
    const bytes = new Uint8Array(NODE_TABLE_BYTES);
    const view = new DataView(bytes.buffer);
    secondBlockTable().forEach((w, i) => view.setUint32(4 * i, w, true));
    nodeTableBytes = bytes;
  }
  new Uint8Array(memory.buffer).set(nodeTableBytes, 0);
}

/** True when every export of `module` agrees with hashNode (node:crypto) on inputs hitting all 256 table rows. */
function selfTest(api: WasmApi, module: object): boolean {
  const memory = new api.Memory({ initial: 2, maximum: 2, shared: true });
  writeSecondBlockTable(memory);
  const exports = new api.Instance(module, { env: { mem: memory } }).exports;
  const mem = new Uint8Array(memory.buffer);
  const pairs = 256;
  const src = WASM_TREE_BASE + 64;
  const dst = src + pairs * 2 * HASH_BYTES;
  for (let i = 0; i < pairs * 2 * HASH_BYTES; i++) mem[src + i] = (i * 167 + 13 + (i >> 9)) & 0xff;
  for (let i = 0; i < pairs; i++) mem[src + i * 64 + 63] = i;
  const runs: [string, number][] = [["nodes", pairs], ["nodes4", pairs / 4]];
  for (const [name, count] of runs) {
    const fn = exports[name] as NodesFn | undefined;
    if (!fn) continue;
    mem.fill(0, dst, dst + pairs * HASH_BYTES);
    fn(src, dst, count, 0);
    for (let i = 0; i < pairs; i++) {
      const left = Buffer.from(mem.subarray(src + i * 64, src + i * 64 + 32));
      const right = Buffer.from(mem.subarray(src + i * 64 + 32, src + i * 64 + 64));
      if (!hashNode(left, right).equals(mem.subarray(dst + i * 32, dst + i * 32 + 32))) return false;
    }
  }
  return true;
}

/** The node-hashing module (4-lane SIMD where the runtime has it), compiled and self-tested once; null when unusable. */
function nodeHasherModule(): object | null {
  if (wasmModule !== undefined) return wasmModule;
  wasmModule = null;
  const api = wasmApi();
  if (!api) return null;
  for (const withSimd of [true, false]) {
    try {
      const module = new api.Module(emitNodeHasher(NODE_PREFIX, withSimd));
      if (selfTest(api, module)) return (wasmModule = module);
    } catch {
      // not supported here: try the next variant
    }
  }
  return null;
}

/** Where a tree's flat nodes live while it is built: plain, shared, or inside a WebAssembly memory. */
interface TreeStore {
  mem: Uint8Array; // whole backing memory
  base: number; // byte offset of level 0 in mem
  nodes: Buffer; // the flat tree itself (a view)
  shared: SharedArrayBuffer | null;
  memory: WasmMemory | null;
  module: object | null;
}

function allocateStore(totalBytes: number, leafCount: number, shared: boolean, engine: Engine): TreeStore {
  const api = wasmApi();
  const module = engine === "wasm" || (engine === "auto" && leafCount >= WASM_MIN_LEAVES) ? nodeHasherModule() : null;
  if (module && api && WASM_TREE_BASE + totalBytes <= 65535 * WASM_PAGE) {
    try {
      const pages = Math.ceil((WASM_TREE_BASE + totalBytes) / WASM_PAGE);
      const memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
      const mem = new Uint8Array(memory.buffer);
      writeSecondBlockTable(memory);
      const nodes = Buffer.from(memory.buffer, WASM_TREE_BASE, totalBytes);
      return { mem, base: WASM_TREE_BASE, nodes, shared: memory.buffer, memory, module };
    } catch {
      // memory could not be reserved: fall through to node:crypto
    }
  }
  if (engine === "wasm") throw new Error("Merkle tree: the WebAssembly engine is not available");
  if (shared) {
    const sab = new SharedArrayBuffer(totalBytes);
    const nodes = Buffer.from(sab);
    return { mem: nodes, base: 0, nodes, shared: sab, memory: null, module: null };
  }
  const nodes = Buffer.allocUnsafeSlow(totalBytes);
  return { mem: nodes, base: 0, nodes, shared: null, memory: null, module: null };
}

/** The WebAssembly exports bound to this store's memory, or null for node:crypto. */
function storeHasher(store: TreeStore): WasmHasher | null {
  const api = wasmApi();
  if (!store.module || !store.memory || !api) return null;
  return new api.Instance(store.module, { env: { mem: store.memory } }).exports as unknown as WasmHasher;
}

// THE level builder, used by buildTree, by the calling thread of buildTreeParallel and, through its
// source text, by the worker threads, so the level/promotion rule exists once. Node hashes come from
// `wasm` (the module above) or, without it, from node:crypto with `prefix`. It must stay
// self-contained — no closures, no nested functions (tsx's keepNames would wrap them in a helper the
// worker lacks). It fills levels fromLevel+1..toLevel above nodes [lo, hi) of level fromLevel, where
// lo is a multiple of 2^(toLevel-fromLevel) and hi is either such a multiple or the level's end.
// (The istanbul hint keeps coverage counters, which the worker could not reach, out of its source.)
/* istanbul ignore next */
function buildLevelRange(
  mem: Uint8Array,
  base: number,
  offsets: ArrayLike<number>,
  sizes: ArrayLike<number>,
  fromLevel: number,
  toLevel: number,
  lo: number,
  hi: number,
  prefix: number,
  algorithm: string,
  wasm: { nodes: (src: number, dst: number, count: number, table: number) => void; nodes4?: (src: number, dst: number, count: number, table: number) => void } | null,
): void {
  // Short calls let V8 switch to the optimised WebAssembly code early (it tiers up between calls).
  const WASM_CALL_PAIRS = 2048;
  const digest = (process as unknown as { getBuiltinModule(id: string): typeof import("node:crypto") }).getBuiltinModule("node:crypto").hash;
  const scratch = new Uint8Array(65);
  scratch[0] = prefix;
  let childLo = lo;
  let childHi = hi;
  for (let level = fromLevel + 1; level <= toLevel; level++) {
    const src = base + offsets[level - 1];
    const dst = base + offsets[level];
    const parentLo = childLo >>> 1;
    const parentHi = (childHi + 1) >>> 1;
    // Odd node count at the true end of the level: its last node is promoted unchanged.
    const promoted = childHi === sizes[level - 1] && (childHi - childLo) % 2 === 1;
    const hashedHi = promoted ? parentHi - 1 : parentHi;
    if (wasm) {
      for (let i = parentLo; i < hashedHi; i += WASM_CALL_PAIRS) {
        const count = Math.min(WASM_CALL_PAIRS, hashedHi - i);
        const groups = wasm.nodes4 ? count >>> 2 : 0;
        if (groups > 0) wasm.nodes4!(src + 64 * i, dst + 32 * i, groups, 0);
        const done = 4 * groups;
        if (done < count) wasm.nodes(src + 64 * (i + done), dst + 32 * (i + done), count - done, 0);
      }
    } else {
      for (let i = parentLo; i < hashedHi; i++) {
        scratch.set(mem.subarray(src + 64 * i, src + 64 * i + 64), 1);
        mem.set(digest(algorithm, scratch, "buffer") as unknown as Uint8Array, dst + 32 * i);
      }
    }
    if (promoted) mem.copyWithin(dst + 32 * hashedHi, src + 64 * hashedHi, src + 64 * hashedHi + 32);
    childLo = parentLo;
    childHi = parentHi;
  }
}

/** A tree held in its flat form; `levels` is materialised (as views, no copies) only when read. */
class FlatMerkleTree implements MerkleTree {
  readonly leafCount: number;
  readonly root: Buffer;
  readonly sizes: number[];
  readonly offsets: number[];
  private cachedLevels: Buffer[][] | null = null;

  constructor(
    readonly nodes: Buffer,
    leafCount: number,
  ) {
    this.leafCount = leafCount;
    this.sizes = levelSizes(leafCount);
    this.offsets = levelOffsets(this.sizes);
    if (nodes.length !== this.offsets[this.offsets.length - 1]) {
      throw new RangeError(`serialized Merkle tree: ${nodes.length} bytes, expected ${this.offsets[this.offsets.length - 1]} for ${leafCount} leaves`);
    }
    this.root = Buffer.from(nodes.subarray(nodes.length - HASH_BYTES));
  }

  get levels(): Buffer[][] {
    if (!this.cachedLevels) {
      this.cachedLevels = this.sizes.map((size, l) => {
        const level: Buffer[] = new Array(size);
        for (let i = 0; i < size; i++) {
          const off = this.offsets[l] + i * HASH_BYTES;
          level[i] = this.nodes.subarray(off, off + HASH_BYTES);
        }
        return level;
      });
    }
    return this.cachedLevels;
  }
}

/** "auto": WebAssembly for trees of WASM_MIN_LEAVES or more when it passed its self-test; tests force either. */
export type Engine = "auto" | "wasm" | "node";

function copyLeaves(store: TreeStore, leafHashes: Buffer[], from: number, to: number): void {
  const { mem, base } = store;
  for (let i = from; i < to; i++) {
    const leaf = leafHashes[i];
    if (!Buffer.isBuffer(leaf) || leaf.length !== HASH_BYTES) throw new TypeError(`Merkle tree: leaf hash ${i} is not a 32-byte Buffer`);
    mem.set(leaf, base + i * HASH_BYTES);
  }
}

export function buildTree(leafHashes: Buffer[], opts: { engine?: Engine } = {}): MerkleTree {
  const n = leafHashes.length;
  const sizes = levelSizes(n);
  const offsets = levelOffsets(sizes);
  const store = allocateStore(offsets[offsets.length - 1], n, false, opts.engine ?? "auto");
  copyLeaves(store, leafHashes, 0, n);
  buildLevelRange(store.mem, store.base, offsets, sizes, 0, sizes.length - 1, 0, n, NODE_PREFIX, HASH_ALGORITHM, storeHasher(store));
  return new FlatMerkleTree(store.nodes, n);
}

// ---------------------------------------------------------------------------------------------
// Parallel build. Leaves are cut into aligned chunks of 2^m; with the promotion rule each chunk's
// subtree is exactly the corresponding slice of every level up to m, so threads write their slices
// of one shared memory without coordination and the calling thread finishes the few top levels.

// Below this, handing work to another thread costs more than it saves (measured in bench/merkle.ts).
export const PARALLEL_MIN_LEAVES = 1 << 14;

const WORKER_SOURCE = `"use strict";
var __name = function (f) { return f; };
const { parentPort } = require("node:worker_threads");
const buildLevelRange = (${buildLevelRange.toString()});
parentPort.on("message", function (m) {
  try {
    const wasm = m.module ? new WebAssembly.Instance(m.module, { env: { mem: m.memory } }).exports : null;
    buildLevelRange(new Uint8Array(m.shared), m.base, m.offsets, m.sizes, m.fromLevel, m.toLevel, m.lo, m.hi, m.prefix, m.algorithm, wasm);
    parentPort.postMessage({ id: m.id, ok: true });
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.stack) || e) });
  }
});
`;

interface Job {
  shared: SharedArrayBuffer;
  memory: WasmMemory | null;
  module: object | null;
  base: number;
  offsets: number[];
  sizes: number[];
  fromLevel: number;
  toLevel: number;
  lo: number;
  hi: number;
  prefix: number;
  algorithm: string;
}

class PoolWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextId = 1;
  dead = false;

  constructor() {
    const { Worker: WorkerThread } = nodeBuiltin<typeof import("node:worker_threads")>("node:worker_threads");
    this.worker = new WorkerThread(WORKER_SOURCE, { eval: true });
    this.worker.unref(); // an idle pool must not keep the process alive
    this.worker.on("message", (m: { id: number; ok: boolean; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.ok) p.resolve();
      else p.reject(new Error(`merkle worker: ${m.error}`));
    });
    const fail = (e: Error) => {
      this.dead = true;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`merkle worker exited with code ${code}`)));
  }

  run(job: Job): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, ...job });
    });
  }

  terminate(): Promise<number> {
    this.dead = true;
    return this.worker.terminate();
  }
}

let pool: PoolWorker[] = [];

function poolWorkers(count: number): PoolWorker[] {
  pool = pool.filter((w) => !w.dead);
  try {
    while (pool.length < count) pool.push(new PoolWorker());
  } catch {
    // no more threads: the calling thread does the rest
  }
  return pool.slice(0, count);
}

/** Stops the worker threads kept for buildTreeParallel (tests, graceful shutdown). */
export async function terminateMerkleWorkers(): Promise<void> {
  const all = pool;
  pool = [];
  await Promise.all(all.map((w) => w.terminate()));
}

let workerFailures = 0;
let lastWorkerError: string | null = null;

/** Which engines are in use, and whether any worker share had to be redone on the calling thread. */
export function merkleEngineInfo(): { wasm: boolean; workers: number; workerFailures: number; lastWorkerError: string | null } {
  return { wasm: nodeHasherModule() !== null, workers: pool.filter((w) => !w.dead).length, workerFailures, lastWorkerError };
}

function runJob(store: TreeStore, job: Job): void {
  buildLevelRange(store.mem, job.base, job.offsets, job.sizes, job.fromLevel, job.toLevel, job.lo, job.hi, job.prefix, job.algorithm, storeHasher(store));
}

/**
 * Same tree as buildTree, built on `threads` threads (default: all cores). Small trees are built
 * inline. A worker that fails has its share rebuilt on the calling thread, so the result never
 * depends on worker availability.
 */
export async function buildTreeParallel(leafHashes: Buffer[], opts: { threads?: number; engine?: Engine } = {}): Promise<MerkleTree> {
  const n = leafHashes.length;
  const threads = Math.max(1, Math.floor(opts.threads ?? nodeBuiltin<typeof import("node:os")>("node:os").availableParallelism()));
  if (threads === 1 || n < PARALLEL_MIN_LEAVES) return buildTree(leafHashes, opts);
  const sizes = levelSizes(n);
  const offsets = levelOffsets(sizes);
  const store = allocateStore(offsets[offsets.length - 1], n, true, opts.engine ?? "auto");
  const m = Math.ceil(Math.log2(Math.ceil(n / threads)));
  const chunk = 2 ** m;
  const parts = Math.ceil(n / chunk);
  const jobs: Job[] = [];
  for (let p = 0; p < parts; p++) {
    const lo = p * chunk;
    const hi = Math.min(n, lo + chunk);
    jobs.push({
      shared: store.shared!,
      memory: store.memory,
      module: store.module,
      base: store.base,
      offsets,
      sizes,
      fromLevel: 0,
      toLevel: m,
      lo,
      hi,
      prefix: NODE_PREFIX,
      algorithm: HASH_ALGORITHM,
    });
  }
  // The last (smallest) part stays on this thread, which also copies every leaf in: each worker's
  // leaves are copied and its job posted first, so the workers start while the copying goes on.
  const helpers = poolWorkers(parts - 1);
  const running: Promise<void>[] = [];
  for (let p = 0; p < parts - 1; p++) {
    const job = jobs[p];
    copyLeaves(store, leafHashes, job.lo, job.hi);
    const helper = helpers[p];
    running.push(
      helper
        ? helper.run(job).catch((e: Error) => {
            workerFailures++;
            lastWorkerError = e.message;
            runJob(store, job);
          })
        : Promise.resolve().then(() => runJob(store, job)),
    );
  }
  const last = jobs[parts - 1];
  copyLeaves(store, leafHashes, last.lo, last.hi);
  runJob(store, last);
  await Promise.all(running);
  buildLevelRange(store.mem, store.base, offsets, sizes, m, sizes.length - 1, 0, sizes[m], NODE_PREFIX, HASH_ALGORITHM, storeHasher(store));
  return new FlatMerkleTree(store.nodes, n);
}

// ---------------------------------------------------------------------------------------------
// Proofs.

function asFlat(tree: MerkleTree): FlatMerkleTree {
  if (tree instanceof FlatMerkleTree) return tree;
  // A tree assembled elsewhere (plain object): flatten it once; its levels are taken as given.
  const sizes = levelSizes(tree.leafCount);
  const offsets = levelOffsets(sizes);
  if (tree.levels.length !== sizes.length) throw new RangeError("Merkle tree: wrong number of levels for leafCount");
  const nodes = Buffer.allocUnsafeSlow(offsets[offsets.length - 1]);
  tree.levels.forEach((level, l) => {
    if (level.length !== sizes[l]) throw new RangeError(`Merkle tree: level ${l} has ${level.length} nodes, expected ${sizes[l]}`);
    level.forEach((h, i) => nodes.set(h, offsets[l] + i * HASH_BYTES));
  });
  return new FlatMerkleTree(nodes, tree.leafCount);
}

function checkIndex(leafCount: number, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= leafCount) throw new RangeError(`Merkle proof: leaf index ${index} out of range [0, ${leafCount})`);
}

function stepsFromFlat(nodes: Buffer, sizes: number[], offsets: number[], index: number): ProofStep[] {
  const steps: ProofStep[] = [];
  let idx = index;
  for (let l = 0; l < sizes.length - 1; l++) {
    const sib = idx ^ 1;
    if (sib < sizes[l]) {
      const off = offsets[l] + sib * HASH_BYTES;
      steps.push({ position: idx & 1 ? "left" : "right", hash: nodes.toString("hex", off, off + HASH_BYTES) });
    } // else: idx is a promoted odd last node, no step at this level
    idx >>>= 1;
  }
  return steps;
}

/** Proof for leaf `index`, bottom-up, read from the stored levels (O(log n)). */
export function proofFor(tree: MerkleTree, index: number): ProofStep[] {
  checkIndex(tree.leafCount, index);
  if (tree instanceof FlatMerkleTree) return stepsFromFlat(tree.nodes, tree.sizes, tree.offsets, index);
  const steps: ProofStep[] = [];
  let idx = index;
  for (let l = 0; l < tree.levels.length - 1; l++) {
    const level = tree.levels[l];
    const sib = idx ^ 1;
    if (sib < level.length) steps.push({ position: idx & 1 ? "left" : "right", hash: level[sib].toString("hex") });
    idx >>>= 1;
  }
  return steps;
}

/** Folds a proof from a leaf hash; throws TypeError on a malformed step. */
export function rootFromProof(leafHash: Buffer, steps: ProofStep[]): Buffer {
  if (!Buffer.isBuffer(leafHash) || leafHash.length !== HASH_BYTES) throw new TypeError("Merkle proof: leaf hash must be 32 bytes");
  if (!Array.isArray(steps)) throw new TypeError("Merkle proof: steps must be an array");
  let acc = leafHash;
  for (const step of steps) {
    if (!step || typeof step.hash !== "string" || !HEX64.test(step.hash)) throw new TypeError("Merkle proof: step hash must be 64 hex characters");
    const sibling = Buffer.from(step.hash, "hex");
    if (step.position === "left") acc = hashNode(sibling, acc);
    else if (step.position === "right") acc = hashNode(acc, sibling);
    else throw new TypeError(`Merkle proof: step position must be "left" or "right"`);
  }
  return acc === leafHash ? Buffer.from(leafHash) : acc;
}

export function verifyProof(leafHash: Buffer, steps: ProofStep[], root: Buffer): boolean {
  try {
    return Buffer.isBuffer(root) && root.length === HASH_BYTES && rootFromProof(leafHash, steps).equals(root);
  } catch {
    return false;
  }
}

/**
 * The leaf index a proof must belong to in a tree of `leafCount` leaves, or null when the proof's
 * shape (number of steps, positions) fits no leaf of such a tree. Walks down from the root: a node
 * with a single child (promoted) consumes no step, otherwise the top-most unused step says which child.
 */
export function indexFromProof(leafCount: number, steps: ProofStep[]): number | null {
  let sizes: number[];
  try {
    sizes = levelSizes(leafCount);
  } catch {
    return null;
  }
  let idx = 0;
  let k = steps.length - 1;
  for (let l = sizes.length - 2; l >= 0; l--) {
    const left = 2 * idx;
    if (left + 1 >= sizes[l]) {
      idx = left;
      continue;
    }
    if (k < 0) return null;
    const pos = steps[k--].position;
    if (pos !== "left" && pos !== "right") return null;
    idx = pos === "left" ? left + 1 : left;
  }
  return k === -1 ? idx : null;
}

// ---------------------------------------------------------------------------------------------
// Stored form.

/** All levels concatenated (leaves first, root last), 32 bytes per node; a fresh copy. */
export function serializeTree(tree: MerkleTree): Buffer {
  return Buffer.from(asFlat(tree).nodes);
}

/** Wraps a stored tree (no copy, no hashing) so proofFor and forEachCompactProof can use it. */
export function deserializeTree(buf: Buffer, leafCount: number): MerkleTree {
  return new FlatMerkleTree(buf, leafCount);
}

/** Proof and root straight from the stored form, without rebuilding or wrapping the tree. */
export function proofFromSerialized(buf: Buffer, leafCount: number, index: number): { steps: ProofStep[]; root: Buffer } {
  const sizes = levelSizes(leafCount);
  const offsets = levelOffsets(sizes);
  const total = offsets[offsets.length - 1];
  if (!Buffer.isBuffer(buf) || buf.length !== total) throw new RangeError(`serialized Merkle tree: expected ${total} bytes for ${leafCount} leaves`);
  checkIndex(leafCount, index);
  return { steps: stepsFromFlat(buf, sizes, offsets, index), root: Buffer.from(buf.subarray(total - HASH_BYTES)) };
}

// ---------------------------------------------------------------------------------------------
// Bulk proofs. Compact form: the sibling hashes bottom-up, 32 bytes each, nothing else — positions
// follow from (leafCount, index). Walking leaves in order, the sibling at level l changes only every
// 2^l leaves, so all n proofs cost ~2n node copies instead of n·log n.

/**
 * Calls `fn(index, siblings, steps)` for every leaf in order. `siblings` is a reused buffer of
 * `steps` × 32 bytes, valid only during the call (copy it to keep it).
 */
export function forEachCompactProof(tree: MerkleTree, fn: (index: number, siblings: Buffer, steps: number) => void): void {
  const flat = asFlat(tree);
  const { nodes, sizes, offsets } = flat;
  const n = flat.leafCount;
  const depth = sizes.length - 1;
  const slots = Buffer.alloc(depth * HASH_BYTES);
  const compacted = Buffer.alloc(depth * HASH_BYTES);
  // Copy 8 words in JS when the tree is 4-byte aligned: cheaper than a native copy call per node.
  const words = nodes.byteOffset % 4 === 0 ? new Uint32Array(nodes.buffer, nodes.byteOffset, nodes.length >>> 2) : null;
  const slotWords = new Uint32Array(slots.buffer, slots.byteOffset, slots.length >>> 2);
  const full = (2 ** depth - 1) | 0;
  let present = 0;
  for (let i = 0; i < n; i++) {
    // Levels whose node changes from leaf i-1 to leaf i: 0..ctz(i).
    const top = i === 0 ? depth - 1 : Math.min(depth - 1, 31 - Math.clz32(i & -i));
    for (let l = 0; l <= top; l++) {
      const sib = (i >>> l) ^ 1;
      if (sib < sizes[l]) {
        const off = offsets[l] + sib * HASH_BYTES;
        if (words) {
          const from = off >>> 2;
          const to = l * 8;
          for (let k = 0; k < 8; k++) slotWords[to + k] = words[from + k];
        } else nodes.copy(slots, l * HASH_BYTES, off, off + HASH_BYTES);
        present |= 1 << l;
      } else present &= ~(1 << l);
    }
    if (present === full) {
      fn(i, slots, depth);
    } else {
      let k = 0;
      for (let l = 0; l < depth; l++) {
        if (present & (1 << l)) slots.copy(compacted, HASH_BYTES * k++, l * HASH_BYTES, (l + 1) * HASH_BYTES);
      }
      fn(i, compacted.subarray(0, k * HASH_BYTES), k);
    }
  }
}

/** Expands a compact proof (see forEachCompactProof) to ProofStep[]. */
export function compactProofToSteps(leafCount: number, index: number, siblings: Buffer): ProofStep[] {
  const sizes = levelSizes(leafCount);
  checkIndex(leafCount, index);
  const steps: ProofStep[] = [];
  let idx = index;
  let k = 0;
  for (let l = 0; l < sizes.length - 1; l++) {
    if ((idx ^ 1) < sizes[l]) {
      if ((k + 1) * HASH_BYTES > siblings.length) throw new RangeError("compact proof: too few sibling hashes");
      steps.push({ position: idx & 1 ? "left" : "right", hash: siblings.toString("hex", k * HASH_BYTES, (k + 1) * HASH_BYTES) });
      k++;
    }
    idx >>>= 1;
  }
  if (k * HASH_BYTES !== siblings.length) throw new RangeError("compact proof: too many sibling hashes");
  return steps;
}
