import { randomBytes, randomUUID } from "node:crypto";
import { BrowserProvider } from "ethers";
import {
  ANCHOR_MAGIC,
  ANCHOR_PAYLOAD_BYTES,
  anchorTransactionGas,
  decodeAnchorCalldata,
  encodeAnchorCalldata,
} from "../../lib/anchor-payload";
import { canonicalBytes } from "../../lib/canonical";
import { buildTree, hashLeaf, proofFor } from "../../lib/merkle";
import {
  batchLeafHash,
  buildProofDocument,
  CHAIN_CHECKS,
  jsonRpcChainReader,
  HASH_CHECKS,
  ledgerHeadLeafHash,
  parseProofDocument,
  productLeafHash,
  PROOF_VERSION,
  ProofFormatError,
  verifyProofDocument,
  type AnchorTransaction,
  type ChainReader,
  type ProductLeafFields,
  type ProofDocument,
} from "../../lib/proof";

const hex = (n: number) => randomBytes(n).toString("hex");
const ALL_CHECKS = [...HASH_CHECKS, ...CHAIN_CHECKS];

function product(i: number, batchId: string): ProductLeafFields {
  return {
    tag_id: randomUUID(),
    tenant_id: "tenant-1",
    batch_id: batchId,
    sku: "SKU-42",
    name: "Olive oil 500 ml",
    serial: `SN-${1000 + i}`,
    gtin: i % 2 ? "09506000134352" : null,
    lot: i % 2 ? "LOT-7" : null,
    salt: hex(16),
  };
}

/** A period with three batches and a ledger head; returns the document of one product. */
function scenario(opts: { products?: number; pick?: number } = {}) {
  const batchId = "batch-b";
  const products = Array.from({ length: opts.products ?? 5 }, (_, i) => product(i, batchId));
  const pick = opts.pick ?? 3;
  const batchTree = buildTree(products.map(productLeafHash));
  const periodLeaves = [
    batchLeafHash("batch-a", hex(32)),
    batchLeafHash(batchId, batchTree.root.toString("hex")),
    ledgerHeadLeafHash({ partition: "scan-0", seq: 41, hash: hex(32) }),
    batchLeafHash("batch-c", hex(32)),
  ];
  const periodTree = buildTree(periodLeaves);
  const address = "0x" + hex(20);
  const tx: AnchorTransaction = {
    chainId: 31337,
    from: address.toUpperCase().replace("0X", "0x"), // case must not matter
    to: address,
    data: encodeAnchorCalldata(periodTree.root),
    blockNumber: 120,
    confirmations: 12,
  };
  const doc = buildProofDocument({
    product: products[pick],
    batch: { id: batchId, root: batchTree.root, leaf_count: products.length, path: proofFor(batchTree, pick) },
    period: { id: "period-2025-01-01T00:00", root: periodTree.root, path: proofFor(periodTree, 1) },
    anchor: { chain_id: 31337, tx_hash: "0x" + hex(32), block_number: 120, address, confirmations_required: 12 },
    issued_at: new Date("2025-01-01T00:05:00Z"),
    issuer_url: "https://voketag.example",
  });
  return { doc, tx, products, batchTree, periodTree };
}

function fakeChain(txHash: string, tx: AnchorTransaction | null): ChainReader & { calls: number } {
  return {
    calls: 0,
    async getAnchorTransaction(h: string) {
      this.calls++;
      return h.toLowerCase() === txHash.toLowerCase() ? tx : null;
    },
  };
}

const clone = (d: ProofDocument): ProofDocument => JSON.parse(JSON.stringify(d));
const flipHex = (h: string, at = 0) => h.slice(0, at) + (h[at] === "0" ? "1" : "0") + h.slice(at + 1);
const failing = (r: { checks: { name: string; ok: boolean }[] }) => r.checks.filter((c) => !c.ok).map((c) => c.name);

describe("leaf formulas", () => {
  it("product leaf = hashLeaf(canonical {type:'product', fields}) over exactly the listed fields", () => {
    const p = product(1, "b");
    const expected = hashLeaf(canonicalBytes({ type: "product", ...p }));
    expect(productLeafHash(p)).toEqual(expected);
    expect(productLeafHash({ ...p, extra: "ignored" } as ProductLeafFields)).toEqual(expected);
    expect(productLeafHash({ ...p, salt: hex(16) })).not.toEqual(expected);
    // A missing gtin/lot is the same as null, not a different leaf.
    const q = product(0, "b");
    expect(productLeafHash({ ...q, gtin: undefined as unknown as null, lot: undefined as unknown as null })).toEqual(productLeafHash(q));
  });

  it("batch and ledger-head leaves are typed, so one kind never passes for another", () => {
    const root = hex(32);
    expect(batchLeafHash("b1", root)).toEqual(hashLeaf(canonicalBytes({ type: "batch", batch_id: "b1", root })));
    expect(ledgerHeadLeafHash({ partition: "p", seq: 3, hash: root })).toEqual(hashLeaf(canonicalBytes({ type: "ledger_head", partition: "p", seq: 3, hash: root })));
    expect(batchLeafHash("p", root)).not.toEqual(ledgerHeadLeafHash({ partition: "p", seq: 3, hash: root }));
    expect(() => batchLeafHash("b1", root.toUpperCase())).toThrow(TypeError);
    expect(() => batchLeafHash("b1", "0x" + root)).toThrow(TypeError);
  });
});

describe("anchor calldata", () => {
  it("is 0x + 'VOKETAG1' + the 32-byte root, and decodes back", () => {
    const root = randomBytes(32);
    const data = encodeAnchorCalldata(root);
    expect(ANCHOR_MAGIC).toBe("VOKETAG1");
    expect(ANCHOR_PAYLOAD_BYTES).toBe(40);
    expect(data).toBe("0x564f4b4554414731" + root.toString("hex"));
    expect(decodeAnchorCalldata(data)).toEqual(root);
    expect(decodeAnchorCalldata(data.toUpperCase().replace("0X", "0x"))).toEqual(root);
    expect(() => encodeAnchorCalldata(randomBytes(31))).toThrow(TypeError);
  });

  it("decodes to null unless the shape is exact", () => {
    const data = encodeAnchorCalldata(randomBytes(32));
    for (const bad of [data.slice(2), data + "00", data.slice(0, -2), "0x564f4b4554414732" + data.slice(18), data.slice(0, -1) + "g", "0x", "", 42 as unknown as string]) {
      expect(decodeAnchorCalldata(bad)).toBeNull();
    }
  });

  it("costs 21000 + 16 per non-zero byte + 4 per zero byte", () => {
    const root = Buffer.alloc(32, 0x11);
    root[0] = 0;
    root[5] = 0;
    expect(anchorTransactionGas(encodeAnchorCalldata(root))).toBe(21000 + 16 * 38 + 4 * 2);
  });
});

describe("proof document", () => {
  it("verifies end to end with a chain reader: all nine checks, in order", async () => {
    const { doc, tx } = scenario();
    const chain = fakeChain(doc.anchor.tx_hash, tx);
    const result = await verifyProofDocument(doc, chain);
    expect(result.checks.map((c) => c.name)).toEqual(ALL_CHECKS);
    expect(failing(result)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(chain.calls).toBe(1);
    expect(result.checks.find((c) => c.name === "batch_path")!.detail).toMatch(/leaf 3 of 5/);
  });

  it("has the documented shape and survives a JSON round trip", async () => {
    const { doc, tx, batchTree, periodTree, products } = scenario();
    expect(doc.version).toBe(PROOF_VERSION);
    expect(doc.leaf_hash).toBe(productLeafHash(products[3]).toString("hex"));
    expect(doc.batch.root).toBe(batchTree.root.toString("hex"));
    expect(doc.period.root).toBe(periodTree.root.toString("hex"));
    expect(doc.issued_at).toBe("2025-01-01T00:05:00.000Z");
    expect(doc.issuer).toEqual({ name: "VokeTag", url: "https://voketag.example" });
    expect(Object.keys(doc).sort()).toEqual(["anchor", "batch", "issued_at", "issuer", "leaf_hash", "period", "product", "version"]);
    const text = JSON.stringify(doc);
    expect(parseProofDocument(text)).toEqual(doc);
    expect((await verifyProofDocument(JSON.parse(text), fakeChain(doc.anchor.tx_hash, tx))).valid).toBe(true);
  });

  it("verifies every product of batches of several sizes, including promoted last leaves", async () => {
    for (const n of [1, 2, 3, 6, 7]) {
      for (let pick = 0; pick < n; pick++) {
        const { doc } = scenario({ products: n, pick });
        const r = await verifyProofDocument(doc, undefined, { offline: true });
        expect(failing(r)).toEqual([]);
      }
    }
  });

  it("offline: only the hash checks, and valid covers them", async () => {
    const { doc } = scenario();
    const r = await verifyProofDocument(doc, undefined, { offline: true });
    expect(r.checks.map((c) => c.name)).toEqual([...HASH_CHECKS]);
    expect(r.valid).toBe(true);
  });

  it("without a chain reader and not offline: chain checks fail as 'not checked'", async () => {
    const { doc } = scenario();
    const r = await verifyProofDocument(doc);
    expect(r.valid).toBe(false);
    expect(r.checks.map((c) => c.name)).toEqual(ALL_CHECKS);
    for (const c of r.checks.filter((x) => (CHAIN_CHECKS as readonly string[]).includes(x.name))) {
      expect(c).toEqual({ name: c.name, ok: false, detail: "not checked: no chain reader" });
    }
    expect(failing(r)).toEqual([...CHAIN_CHECKS]);
  });

  // Every hash in the document, tampered alone, must be caught, by the check(s) named here.
  const tamperings: [string, (d: ProofDocument) => void, string[]][] = [
    ["leaf_hash", (d) => (d.leaf_hash = flipHex(d.leaf_hash)), ["leaf", "batch_path"]],
    ["product.salt", (d) => (d.product.salt = flipHex(d.product.salt)), ["leaf"]],
    ["product.serial", (d) => (d.product.serial += "x"), ["leaf"]],
    ["product.gtin", (d) => (d.product.gtin = "00000000000000"), ["leaf"]],
    ["product.batch_id", (d) => (d.product.batch_id = "batch-a"), ["leaf", "batch_leaf"]],
    ["batch.root", (d) => (d.batch.root = flipHex(d.batch.root, 63)), ["batch_path", "batch_leaf"]],
    ["batch.id", (d) => (d.batch.id = "batch-a"), ["batch_leaf"]],
    ["batch.leaf_count", (d) => (d.batch.leaf_count = 1), ["batch_path"]],
    ["period.batch_leaf_hash", (d) => (d.period.batch_leaf_hash = flipHex(d.period.batch_leaf_hash)), ["batch_leaf", "period_path"]],
    ["period.root", (d) => (d.period.root = flipHex(d.period.root, 10)), ["period_path", "transaction"]],
    ["anchor.tx_hash", (d) => (d.anchor.tx_hash = flipHex(d.anchor.tx_hash, 5)), [...CHAIN_CHECKS]],
    ["anchor.address", (d) => (d.anchor.address = flipHex(d.anchor.address, 7)), ["sender"]],
    ["anchor.chain_id", (d) => (d.anchor.chain_id = 1), ["chain"]],
    ["anchor.block_number", (d) => (d.anchor.block_number = 121), ["block"]],
  ];

  it.each(tamperings)("tampering %s is caught by the right check", async (_field, tamper, expected) => {
    const { doc, tx } = scenario();
    const bad = clone(doc);
    tamper(bad);
    const r = await verifyProofDocument(bad, fakeChain(doc.anchor.tx_hash, tx));
    expect(r.valid).toBe(false);
    expect(failing(r)).toEqual(expected);
    expect(r.checks.map((c) => c.name)).toEqual(ALL_CHECKS); // later checks still ran
  });

  it("tampering any single path hash or position is caught by its path check", async () => {
    const { doc, tx } = scenario({ products: 11, pick: 4 });
    for (const which of ["batch", "period"] as const) {
      for (let k = 0; k < doc[which].path.length; k++) {
        const bad = clone(doc);
        bad[which].path[k].hash = flipHex(bad[which].path[k].hash, 20);
        expect(failing(await verifyProofDocument(bad, fakeChain(doc.anchor.tx_hash, tx)))).toEqual([`${which}_path`]);
        const swapped = clone(doc);
        swapped[which].path[k].position = swapped[which].path[k].position === "left" ? "right" : "left";
        expect(failing(await verifyProofDocument(swapped, fakeChain(doc.anchor.tx_hash, tx)))).toEqual([`${which}_path`]);
      }
    }
  });

  it("a path step dropped or added fails batch_path", async () => {
    const { doc } = scenario({ products: 9, pick: 2 });
    const shorter = clone(doc);
    shorter.batch.path.pop();
    expect(failing(await verifyProofDocument(shorter, undefined, { offline: true }))).toEqual(["batch_path"]);
    const longer = clone(doc);
    longer.batch.path.push(longer.batch.path[0]);
    const r = await verifyProofDocument(longer, undefined, { offline: true });
    expect(failing(r)).toEqual(["batch_path"]);
    expect(r.checks[1].detail).toMatch(/fits no leaf/);
  });
});

describe("chain checks", () => {
  async function withTx(change: Partial<AnchorTransaction>, opts = {}) {
    const { doc, tx } = scenario();
    return verifyProofDocument(doc, fakeChain(doc.anchor.tx_hash, { ...tx, ...change }), opts);
  }

  it("wrong sender", async () => {
    const r = await withTx({ from: "0x" + hex(20) });
    expect(failing(r)).toEqual(["sender"]);
  });

  it("calldata anchoring another root", async () => {
    const r = await withTx({ data: encodeAnchorCalldata(randomBytes(32)) });
    expect(failing(r)).toEqual(["transaction"]);
    expect(r.checks.find((c) => c.name === "transaction")!.detail).toMatch(/not period.root/);
  });

  it("calldata that is not a VokeTag anchor", async () => {
    const r = await withTx({ data: "0x" });
    expect(failing(r)).toEqual(["transaction"]);
    expect(r.checks.find((c) => c.name === "transaction")!.detail).toMatch(/not a VokeTag anchor/);
  });

  it("too few confirmations, and exactly enough", async () => {
    const few = await withTx({ confirmations: 11 });
    expect(failing(few)).toEqual(["confirmations"]);
    expect(few.checks.find((c) => c.name === "confirmations")!.detail).toBe("11 confirmation(s), 12 required");
    expect((await withTx({ confirmations: 12 })).valid).toBe(true);
  });

  it("a verifier may demand more confirmations than the document", async () => {
    expect(failing(await withTx({}, { minConfirmations: 13 }))).toEqual(["confirmations"]);
  });

  it("wrong chain, wrong block, pending transaction", async () => {
    expect(failing(await withTx({ chainId: 1 }))).toEqual(["chain"]);
    expect(failing(await withTx({ blockNumber: 119 }))).toEqual(["block"]);
    expect(failing(await withTx({ blockNumber: null, confirmations: 0 }))).toEqual(["block", "confirmations"]);
  });

  it("trusted addresses: the sender must be one of them", async () => {
    const { doc, tx } = scenario();
    const chain = fakeChain(doc.anchor.tx_hash, tx);
    expect((await verifyProofDocument(doc, chain, { trustedAddresses: [doc.anchor.address.toUpperCase().replace("0X", "0x")] })).valid).toBe(true);
    expect(failing(await verifyProofDocument(doc, chain, { trustedAddresses: ["0x" + hex(20)] }))).toEqual(["sender"]);
  });

  it("transaction not found: every chain check fails", async () => {
    const { doc } = scenario();
    const r = await verifyProofDocument(doc, fakeChain(doc.anchor.tx_hash, null));
    expect(failing(r)).toEqual([...CHAIN_CHECKS]);
    expect(r.checks[4].detail).toBe("transaction not found");
  });

  it("a chain reader error fails the chain checks with its message instead of throwing", async () => {
    const { doc } = scenario();
    const broken: ChainReader = {
      getAnchorTransaction: async () => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:8545");
      },
    };
    const r = await verifyProofDocument(doc, broken);
    expect(r.valid).toBe(false);
    expect(failing(r)).toEqual([...CHAIN_CHECKS]);
    expect(r.checks[4].detail).toBe("chain reader failed: connect ECONNREFUSED 127.0.0.1:8545");
    expect(r.checks.slice(0, 4).every((c) => c.ok)).toBe(true);
  });
});

describe("parseProofDocument", () => {
  const problemsOf = (input: unknown): string[] => {
    try {
      parseProofDocument(input);
    } catch (e) {
      expect(e).toBeInstanceOf(ProofFormatError);
      return (e as ProofFormatError).problems;
    }
    throw new Error("expected a ProofFormatError");
  };

  it("rejects what is not a JSON object", () => {
    expect(problemsOf("{not json")).toEqual(["document: not valid JSON"]);
    expect(problemsOf(null)).toEqual(["document: expected a JSON object"]);
    expect(problemsOf([1])).toEqual(["document: expected a JSON object"]);
    expect(problemsOf("42")).toEqual(["document: expected a JSON object"]);
  });

  it("lists every problem with its path", () => {
    const { doc } = scenario();
    const bad = clone(doc) as unknown as Record<string, any>;
    bad.version = "voketag-proof/2";
    delete bad.product.salt;
    bad.product.gtin = 123;
    bad.leaf_hash = bad.leaf_hash.toUpperCase();
    bad.batch.leaf_count = "5";
    bad.batch.path[0].position = "up";
    bad.period.path = "nope";
    bad.period.root = "0x" + bad.period.root;
    bad.anchor.tx_hash = bad.anchor.tx_hash.slice(2);
    bad.anchor.address = "0x1234";
    bad.anchor.confirmations_required = -1;
    bad.issued_at = "yesterday";
    bad.issuer = { name: "Someone" };
    const problems = problemsOf(bad);
    for (const where of [
      "version",
      "product.salt",
      "product.gtin",
      "leaf_hash",
      "batch.leaf_count",
      "batch.path[0].position",
      "period.path",
      "period.root",
      "anchor.tx_hash",
      "anchor.address",
      "anchor.confirmations_required",
      "issued_at",
      "issuer.name",
    ]) {
      expect(problems.some((p) => p.startsWith(where + ":"))).toBe(true);
    }
    expect(problems).toHaveLength(13);
  });

  it("rejects missing sections, non-hex hashes, bad steps and oversized paths", () => {
    const { doc } = scenario();
    const noAnchor = clone(doc) as Partial<ProofDocument>;
    delete noAnchor.anchor;
    expect(problemsOf(noAnchor)).toEqual(expect.arrayContaining(["anchor: expected an object"]));
    const nonHex = clone(doc);
    nonHex.batch.path[0].hash = "g".repeat(64);
    expect(problemsOf(nonHex)).toEqual(["batch.path[0].hash: expected 64 lower-case hex characters (no 0x)"]);
    const notStep = clone(doc) as unknown as Record<string, any>;
    notStep.period.path[0] = "abc";
    expect(problemsOf(notStep)).toEqual(["period.path[0]: expected an object {position, hash}"]);
    const long = clone(doc);
    long.batch.path = Array.from({ length: 65 }, () => ({ position: "left", hash: hex(32) }));
    expect(problemsOf(long)).toEqual(["batch.path: more than 64 steps"]);
    const shortSalt = clone(doc);
    shortSalt.product.salt = hex(8);
    expect(problemsOf(shortSalt)).toEqual(["product.salt: expected lower-case hex of at least 16 bytes"]);
  });

  it("drops unknown fields and keeps the known ones", () => {
    const { doc } = scenario();
    const extra = { ...clone(doc), note: "unverified", product: { ...doc.product, colour: "green" } };
    const parsed = parseProofDocument(extra);
    expect(parsed).toEqual(doc);
    expect("note" in parsed).toBe(false);
  });

  it("verifyProofDocument throws ProofFormatError for a malformed document (HTTP 400), never for a well-formed one", async () => {
    await expect(verifyProofDocument({} as ProofDocument)).rejects.toBeInstanceOf(ProofFormatError);
    const { doc } = scenario();
    const wrong = clone(doc);
    wrong.batch.root = hex(32);
    wrong.period.root = hex(32);
    wrong.leaf_hash = hex(32);
    await expect(verifyProofDocument(wrong)).resolves.toMatchObject({ valid: false });
  });

  it("buildProofDocument normalises 0x-prefixed and upper-case hex, and rejects bad input", () => {
    const { doc } = scenario();
    const again = buildProofDocument({
      product: doc.product,
      batch: { ...doc.batch, root: "0x" + doc.batch.root.toUpperCase() },
      period: { id: doc.period.id, root: doc.period.root, path: doc.period.path },
      anchor: { ...doc.anchor, tx_hash: doc.anchor.tx_hash.toUpperCase().replace("0X", "0x") },
      issued_at: doc.issued_at,
      issuer_url: doc.issuer.url,
    });
    expect(again).toEqual(doc);
    expect(() => buildProofDocument({ ...again, batch: { ...again.batch, leaf_count: 0 } } as never)).toThrow(ProofFormatError);
  });
});

describe("jsonRpcChainReader", () => {
  const q = (n: number | bigint) => "0x" + n.toString(16);
  /** A node answering the four calls of docs/PROOFS.md §8, and recording what it was asked. */
  function fakeNode(tx: object | null, receipt: object | null, head: number, chainId: number) {
    const asked: string[] = [];
    const send = async (method: string) => {
      asked.push(method);
      if (method === "eth_getTransactionByHash") return tx;
      if (method === "eth_getTransactionReceipt") return receipt;
      if (method === "eth_blockNumber") return q(head);
      if (method === "eth_chainId") return q(chainId);
      throw new Error(`unexpected ${method}`);
    };
    return { send, asked };
  }

  it("maps a mined transaction, counting confirmations from its block", async () => {
    const data = encodeAnchorCalldata(randomBytes(32));
    const node = fakeNode({ from: "0xAbC", to: "0xdef", input: data, blockNumber: q(100) }, { blockNumber: q(100) }, 111, 31337);
    expect(await jsonRpcChainReader(node.send).getAnchorTransaction("0x" + hex(32))).toEqual({ chainId: 31337, from: "0xAbC", to: "0xdef", data, blockNumber: 100, confirmations: 12 });
    expect(node.asked.sort()).toEqual(["eth_blockNumber", "eth_chainId", "eth_getTransactionByHash", "eth_getTransactionReceipt"]);
  });

  it("counts a mined transaction as confirmed once even when the head read lags", async () => {
    const node = fakeNode({ from: "0xa", to: null, input: "0x", blockNumber: q(100) }, { blockNumber: q(100) }, 99, 1);
    expect(await jsonRpcChainReader(node.send).getAnchorTransaction("0x" + hex(32))).toMatchObject({ blockNumber: 100, confirmations: 1 });
  });

  it("pending: no block, no confirmations; unknown: null", async () => {
    const pending = fakeNode({ from: "0xa", to: null, input: "0x", blockNumber: null }, null, 50, 1);
    expect(await jsonRpcChainReader(pending.send).getAnchorTransaction("0x" + hex(32))).toMatchObject({ blockNumber: null, confirmations: 0, to: null, chainId: 1 });
    const unknown = fakeNode(null, null, 50, 1);
    expect(await jsonRpcChainReader(unknown.send).getAnchorTransaction("0x" + hex(32))).toBeNull();
  });
});

describe("against a real EVM (in-process ganache, ethers 6)", () => {
  it("a document anchored by a real transaction verifies; a tampered one does not", async () => {
    // ganache warns on load that it lacks a native WebSocket build; irrelevant in-process.
    const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
    const ganache = (await import("ganache")).default;
    warn.mockRestore();
    const eip1193 = ganache.provider({ logging: { quiet: true }, chain: { chainId: 31337 }, wallet: { totalAccounts: 1 }, miner: { instamine: "eager" } } as never);
    try {
      const signer = await new BrowserProvider(eip1193 as never).getSigner(0);
      const address = await signer.getAddress();
      const { products, batchTree, periodTree } = scenario();
      const sent = await signer.sendTransaction({ to: address, data: encodeAnchorCalldata(periodTree.root) });
      const receipt = (await sent.wait())!;
      await signer.sendTransaction({ to: address, value: 1 }); // one more block on top
      const doc = buildProofDocument({
        product: products[3],
        batch: { id: "batch-b", root: batchTree.root, leaf_count: products.length, path: proofFor(batchTree, 3) },
        period: { id: "p1", root: periodTree.root, path: proofFor(periodTree, 1) },
        anchor: { chain_id: 31337, tx_hash: sent.hash, block_number: receipt.blockNumber, address, confirmations_required: 2 },
      });
      const reader = jsonRpcChainReader((method, params) => (eip1193 as any).request({ method, params }));
      const ok = await verifyProofDocument(doc, reader);
      expect(failing(ok)).toEqual([]);
      expect(ok.valid).toBe(true);
      const bad = clone(doc);
      bad.anchor.confirmations_required = 3;
      bad.anchor.address = "0x" + hex(20);
      expect(failing(await verifyProofDocument(bad, reader))).toEqual(["sender", "confirmations"]);
    } finally {
      await (eip1193 as unknown as { disconnect(): Promise<void> }).disconnect();
    }
  });
});
