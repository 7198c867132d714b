// docs/PROOFS.md is enough to write a verifier: this file holds one, written from §1–§8 of that page
// and nothing else (no import from lib/, only node:crypto's SHA-256), fed the page's own worked
// example (§10, read from the Markdown), then compared check by check with the reference verifier
// (lib/proof.ts) on real documents and on every kind of tampering, including the raw JSON-RPC
// answers of §8.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import fc from "fast-check";
import { buildTree, proofFor } from "../../lib/merkle";
import { encodeAnchorCalldata } from "../../lib/anchor-payload";
import { batchLeafHash, buildProofDocument, jsonRpcChainReader, ledgerHeadLeafHash, productLeafHash, verifyProofDocument, type ProofDocument } from "../../lib/proof";

const SPEC = fs.readFileSync(path.join(__dirname, "..", "..", "docs", "PROOFS.md"), "utf8");

// ---------------------------------------------------------------------------------------------
// The independent verifier. Section numbers refer to docs/PROOFS.md.

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest();
const specLeaf = (data: Buffer) => sha256(Buffer.concat([Buffer.from([0x00]), data])); // §1
const specNode = (l: Buffer, r: Buffer) => sha256(Buffer.concat([Buffer.from([0x01]), l, r])); // §1

function specCanonical(v: any): string {
  // §2: no whitespace, keys sorted by UTF-16 code units, undefined members dropped, strings and numbers as JSON.stringify.
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : specCanonical(x))).join(",")}]`;
  return `{${Object.keys(v)
    .filter((k) => v[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${specCanonical(v[k])}`)
    .join(",")}}`;
}
const specLeafOf = (obj: object) => specLeaf(Buffer.from(specCanonical(obj), "utf8"));

function specFold(start: Buffer, steps: { position: string; hash: string }[]): Buffer {
  // §5
  let acc = start;
  for (const s of steps) acc = s.position === "left" ? specNode(Buffer.from(s.hash, "hex"), acc) : specNode(acc, Buffer.from(s.hash, "hex"));
  return acc;
}

function specFit(n: number, steps: { position: string }[]): number | null {
  // §5, "Path shape against a leaf count", transcribed.
  const s = [n];
  while (s[s.length - 1] > 1) s.push(Math.ceil(s[s.length - 1] / 2));
  const D = s.length - 1;
  let idx = 0;
  let k = steps.length - 1;
  for (let level = D - 1; level >= 0; level--) {
    const left = 2 * idx;
    if (left + 1 >= s[level]) {
      idx = left;
      continue;
    }
    if (k < 0) return null;
    idx = steps[k].position === "left" ? left + 1 : left;
    k -= 1;
  }
  return k === -1 ? idx : null;
}

function specCalldataRoot(data: string): string | null {
  // §6: exactly 0x + "VOKETAG1" + 32 bytes, hex digits in either case.
  if (!/^0x[0-9a-fA-F]{80}$/.test(data)) return null;
  if (data.slice(2, 18).toLowerCase() !== "564f4b4554414731") return null;
  return data.slice(18).toLowerCase();
}

type RawRpc = { tx: any; receipt: any; head: string; chainId: string } | "unreachable";

function specVerify(d: any, rpc: RawRpc | undefined, trusted?: string[]) {
  // §8, in order.
  const checks: { name: string; ok: boolean }[] = [];
  const p = d.product;
  const leaf = specLeafOf({ type: "product", tag_id: p.tag_id, tenant_id: p.tenant_id, batch_id: p.batch_id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt: p.salt }).toString("hex");
  checks.push({ name: "leaf", ok: leaf === d.leaf_hash });
  checks.push({ name: "batch_path", ok: specFit(d.batch.leaf_count, d.batch.path) !== null && specFold(Buffer.from(d.leaf_hash, "hex"), d.batch.path).toString("hex") === d.batch.root });
  checks.push({ name: "batch_leaf", ok: p.batch_id === d.batch.id && specLeafOf({ type: "batch", batch_id: d.batch.id, root: d.batch.root }).toString("hex") === d.period.batch_leaf_hash });
  checks.push({ name: "period_path", ok: specFold(Buffer.from(d.period.batch_leaf_hash, "hex"), d.period.path).toString("hex") === d.period.root });
  if (rpc === undefined) return checks;
  const names = ["transaction", "sender", "chain", "block", "confirmations"];
  if (rpc === "unreachable" || !rpc.tx) return [...checks, ...names.map((name) => ({ name, ok: false }))];
  const num = (h: any) => (h === null || h === undefined ? null : Number(BigInt(h)));
  const block = num(rpc.receipt?.blockNumber) ?? num(rpc.tx.blockNumber);
  const from = String(rpc.tx.from).toLowerCase();
  checks.push({ name: "transaction", ok: specCalldataRoot(rpc.tx.input ?? rpc.tx.data) === d.period.root });
  checks.push({ name: "sender", ok: from === d.anchor.address.toLowerCase() && (!trusted || trusted.map((a) => a.toLowerCase()).includes(from)) });
  checks.push({ name: "chain", ok: num(rpc.chainId) === d.anchor.chain_id });
  checks.push({ name: "block", ok: block !== null && block === d.anchor.block_number });
  const confirmations = block === null ? 0 : Math.max(num(rpc.head)!, block) - block + 1;
  checks.push({ name: "confirmations", ok: confirmations >= d.anchor.confirmations_required });
  return checks;
}

// ---------------------------------------------------------------------------------------------

/** The same raw answers, handed to the reference verifier through its JSON-RPC reader. */
function referenceReader(rpc: RawRpc) {
  return jsonRpcChainReader(async (method) => {
    if (rpc === "unreachable") throw new Error("connect ECONNREFUSED");
    return { eth_getTransactionByHash: rpc.tx, eth_getTransactionReceipt: rpc.receipt, eth_blockNumber: rpc.head, eth_chainId: rpc.chainId }[method];
  });
}

async function reference(doc: any, rpc: RawRpc | undefined, trusted?: string[]) {
  const r = await verifyProofDocument(doc, rpc === undefined ? undefined : referenceReader(rpc), { offline: rpc === undefined, trustedAddresses: trusted });
  return r.checks.map((c) => ({ name: c.name, ok: c.ok }));
}

const hexq = (n: number) => "0x" + n.toString(16);

describe("an independent verifier written from docs/PROOFS.md", () => {
  it("reproduces the worked example of §10: the 311 canonical bytes, every tree level, the calldata and the verdict", async () => {
    const docJson = SPEC.slice(SPEC.indexOf("```json\n{\n  \"version\": \"voketag-proof/1\"") + 8);
    const example = JSON.parse(docJson.slice(0, docJson.indexOf("```")));
    const canonical = SPEC.match(/Canonical JSON of product 1 \(these exact (\d+) bytes, UTF-8\):\n\n```\n(.+)\n```/)!;
    const p = example.product;
    const mine = specCanonical({ type: "product", tag_id: p.tag_id, tenant_id: p.tenant_id, batch_id: p.batch_id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt: p.salt });
    expect(mine).toBe(canonical[2]);
    expect(Buffer.byteLength(mine)).toBe(Number(canonical[1]));
    expect(specLeaf(Buffer.alloc(0)).toString("hex")).toBe(SPEC.match(/`leaf_hash\(""\)` =\n`([0-9a-f]{64})`/)![1]);
    // The batch tree's levels as printed in §10.
    const batchBlock = SPEC.slice(SPEC.indexOf("Batch tree (3 leaves"));
    const levels = [...batchBlock.slice(0, batchBlock.indexOf("```\n\nBatch leaf")).matchAll(/\b([0-9a-f]{64})\b/g)].map((m) => m[1]);
    expect(levels[1]).toBe(example.leaf_hash);
    expect(specNode(Buffer.from(levels[0], "hex"), Buffer.from(levels[1], "hex")).toString("hex")).toBe(levels[3]);
    expect(specNode(Buffer.from(levels[3], "hex"), Buffer.from(levels[4], "hex")).toString("hex")).toBe(levels[5]);
    expect(levels[5]).toBe(example.batch.root);
    expect(SPEC).toContain(`\`0x564f4b4554414731${example.period.root}\``);
    const checks = specVerify(example, undefined);
    expect(checks).toEqual([
      { name: "leaf", ok: true },
      { name: "batch_path", ok: true },
      { name: "batch_leaf", ok: true },
      { name: "period_path", ok: true },
    ]);
    expect(await reference(example, undefined)).toEqual(checks);
  });

  // Documents made by the reference code from random batches and periods, with a matching raw RPC.
  function scenario(size: number, pick: number, periodSize: number, at: number) {
    const batchId = randomUUID();
    const products = Array.from({ length: size }, (_, i) => ({
      tag_id: randomUUID(),
      tenant_id: randomUUID(),
      batch_id: batchId,
      sku: `SKU-${i}`,
      name: i % 3 ? "Olive oil 500 ml" : "Azeite \u00e9xtra \u201cvirgem\u201d \ud83e\uded2", // non-ASCII: §2 writes it as itself
      serial: `SN-${i}`,
      gtin: i % 2 ? "09506000134352" : null,
      lot: i % 4 ? "L-1" : null,
      salt: randomBytes(16).toString("hex"),
    }));
    const batchTree = buildTree(products.map(productLeafHash));
    const leaves = Array.from({ length: periodSize }, (_, i) =>
      i === at ? batchLeafHash(batchId, batchTree.root.toString("hex")) : i % 2 ? ledgerHeadLeafHash({ partition: `scan-${i}`, seq: i, hash: randomBytes(32).toString("hex") }) : batchLeafHash(randomUUID(), randomBytes(32).toString("hex")),
    );
    const periodTree = buildTree(leaves);
    const address = "0x" + randomBytes(20).toString("hex");
    const txHash = "0x" + randomBytes(32).toString("hex");
    const doc = buildProofDocument({
      product: products[pick],
      batch: { id: batchId, root: batchTree.root, leaf_count: size, path: proofFor(batchTree, pick) },
      period: { id: "p", root: periodTree.root, path: proofFor(periodTree, at) },
      anchor: { chain_id: 137, tx_hash: txHash, block_number: 500, address: address.replace(/[a-f]/g, (c) => c.toUpperCase()), confirmations_required: 3 },
    });
    const rpc: RawRpc = {
      tx: { hash: txHash, from: address, to: address, input: encodeAnchorCalldata(periodTree.root), nonce: "0x7", blockNumber: hexq(500) },
      receipt: { transactionHash: txHash, blockNumber: hexq(500), status: "0x1" },
      head: hexq(503),
      chainId: hexq(137),
    };
    return { doc, rpc, address };
  }

  const flip = (h: string, at: number) => h.slice(0, at) + (h[at] === "0" ? "1" : "0") + h.slice(at + 1);
  // Every kind of single change §8's coverage table speaks of, plus changes to what the RPC answers.
  // Each returns whether the change must be caught (false: it did nothing, or §8 says it need not be).
  const tamperings: [string, (d: any, rpc: any) => boolean][] = [
    ["product field", (d) => ((d.product.serial += "x"), true)],
    ["salt", (d) => ((d.product.salt = flip(d.product.salt, 5)), true)],
    ["gtin null ↔ value", (d) => ((d.product.gtin = d.product.gtin === null ? "1" : null), true)],
    ["leaf_hash", (d) => ((d.leaf_hash = flip(d.leaf_hash, 7)), true)],
    ["batch path hash", (d) => d.batch.path.length > 0 && ((d.batch.path[0].hash = flip(d.batch.path[0].hash, 0)), true)],
    ["batch path position", (d) => d.batch.path.length > 0 && ((d.batch.path.at(-1).position = d.batch.path.at(-1).position === "left" ? "right" : "left"), true)],
    ["batch path step dropped", (d) => d.batch.path.pop() !== undefined],
    ["batch path step added", (d) => (d.batch.path.push({ position: "left", hash: "ab".repeat(32) }), true)],
    ["leaf_count", (d) => ((d.batch.leaf_count += 1), false)], // caught only when the path no longer fits (§8)
    ["batch.root", (d) => ((d.batch.root = flip(d.batch.root, 3)), true)],
    ["batch.id", (d) => ((d.batch.id = randomUUID()), true)],
    ["batch_leaf_hash", (d) => ((d.period.batch_leaf_hash = flip(d.period.batch_leaf_hash, 9)), true)],
    ["period path hash", (d) => d.period.path.length > 0 && ((d.period.path[0].hash = flip(d.period.path[0].hash, 1)), true)],
    ["period.root", (d) => ((d.period.root = flip(d.period.root, 2)), true)],
    ["anchor.address", (d) => ((d.anchor.address = "0x" + "12".repeat(20)), true)],
    ["anchor.chain_id", (d) => ((d.anchor.chain_id = 1), true)],
    ["anchor.block_number", (d) => ((d.anchor.block_number += 1), true)],
    ["confirmations_required", (d) => ((d.anchor.confirmations_required = 10), true)],
    ["rpc: not found", (_d, r) => ((r.tx = null), true)],
    ["rpc: other calldata", (_d, r) => ((r.tx.input = encodeAnchorCalldata(randomBytes(32))), true)],
    ["rpc: calldata in `data`", (_d, r) => ((r.tx.data = r.tx.input), delete r.tx.input, false)], // still valid
    ["rpc: pending", (_d, r) => ((r.receipt = null), (r.tx.blockNumber = null), true)],
    ["rpc: head lags the receipt", (_d, r) => ((r.head = hexq(499)), true)], // counts 1 confirmation, 3 required
    ["rpc: other chain", (_d, r) => ((r.chainId = hexq(1)), true)],
  ];

  it("agrees with the reference verifier, check by check, on real documents and every kind of tampering", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.nat(),
        fc.integer({ min: 1, max: 9 }),
        fc.nat(),
        fc.constantFrom(...tamperings.map((_, i) => i), -1),
        fc.boolean(),
        async (size, pickRaw, periodSize, atRaw, t, trust) => {
          const { doc, rpc, address } = scenario(size, pickRaw % size, periodSize, atRaw % periodSize);
          const d = JSON.parse(JSON.stringify(doc)) as ProofDocument;
          const r = JSON.parse(JSON.stringify(rpc));
          const mustFail = t >= 0 && tamperings[t][1](d, r);
          const trusted = trust ? [address] : undefined;
          const mine = specVerify(d, r, trusted);
          const ref = await reference(d, r, trusted);
          expect(ref).toEqual(mine);
          if (t < 0) expect(mine.every((c) => c.ok)).toBe(true);
          if (mustFail) expect(mine.some((c) => !c.ok)).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("agrees when the RPC cannot be reached, and on a sender outside the trusted list", async () => {
    const { doc, rpc } = scenario(5, 2, 3, 1);
    expect(await reference(doc, "unreachable")).toEqual(specVerify(doc, "unreachable"));
    const other = ["0x" + "34".repeat(20)];
    const mine = specVerify(doc, rpc, other);
    expect(mine.filter((c) => !c.ok).map((c) => c.name)).toEqual(["sender"]);
    expect(await reference(doc, rpc, other)).toEqual(mine);
  });
});
