import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { MerkleTree as MerkleTreeJs } from "merkletreejs";
import {
  buildTree,
  buildTreeParallel,
  compactProofToSteps,
  deserializeTree,
  forEachCompactProof,
  hashLeaf,
  hashNode,
  indexFromProof,
  levelSizes,
  merkleEngineInfo,
  PARALLEL_MIN_LEAVES,
  proofFor,
  proofFromSerialized,
  rootFromProof,
  serializedTreeLength,
  serializeTree,
  terminateMerkleWorkers,
  verifyProof,
  WASM_MIN_LEAVES,
  type MerkleTree,
  type ProofStep,
} from "../../lib/merkle";

const sha256 = (...parts: Buffer[]) => createHash("sha256").update(Buffer.concat(parts)).digest();
const leavesOf = (n: number) => Array.from({ length: n }, () => randomBytes(32));

// merkletreejs configured as our rules: leaves already hashed (0x00 prefix), pairs hashed with the
// 0x01 prefix, no sorting, no duplication. Its odd-node handling pushes the last node up unchanged
// (MerkleTree.createHashes), which is our promotion rule, and its proofs skip that level as ours do.
function referenceTree(leaves: Buffer[]): MerkleTreeJs {
  return new MerkleTreeJs(leaves, (data: Buffer) => sha256(Buffer.from([0x01]), data), {
    hashLeaves: false,
    sortLeaves: false,
    sortPairs: false,
    sort: false,
    duplicateOdd: false,
    isBitcoinTree: false,
  });
}
function referenceProof(tree: MerkleTreeJs, leaf: Buffer, index: number): ProofStep[] {
  return tree.getProof(leaf, index).map((s) => ({ position: s.position as "left" | "right", hash: (s.data as Buffer).toString("hex") }));
}

// RFC 6962 §2.1 Merkle Tree Hash, written from the RFC: split at the largest power of two < n.
function rfc6962Root(leaves: Buffer[]): Buffer {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(Buffer.from([0x01]), rfc6962Root(leaves.slice(0, k)), rfc6962Root(leaves.slice(k)));
}

afterAll(() => terminateMerkleWorkers());

describe("hashing rules", () => {
  it("prefixes leaves with 0x00 and inner nodes with 0x01 (RFC 6962)", () => {
    // RFC 6962 hash of the empty leaf, a published constant (Certificate Transparency).
    expect(hashLeaf(Buffer.alloc(0)).toString("hex")).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    const data = Buffer.from("voketag");
    expect(hashLeaf(data)).toEqual(sha256(Buffer.from([0]), data));
    const [l, r] = leavesOf(2);
    expect(hashNode(l, r)).toEqual(sha256(Buffer.from([1]), l, r));
    expect(hashNode(l, r)).not.toEqual(hashNode(r, l));
    expect(() => hashNode(l, Buffer.alloc(31))).toThrow(TypeError);
  });

  it("a leaf can never equal an inner node of the same bytes", () => {
    const [l, r] = leavesOf(2);
    expect(hashLeaf(Buffer.concat([l, r]))).not.toEqual(hashNode(l, r));
  });
});

describe("tree shape", () => {
  it("rejects an empty tree and malformed leaves", () => {
    expect(() => buildTree([])).toThrow(/at least one leaf/);
    expect(() => buildTree([Buffer.alloc(31)])).toThrow(/32-byte/);
    expect(() => buildTree(["ab".repeat(32)] as unknown as Buffer[])).toThrow(/32-byte/);
  });

  it("keeps levels from leaves to the root, promoting an odd last node unchanged", () => {
    const leaves = leavesOf(5);
    const tree = buildTree(leaves);
    expect(tree.leafCount).toBe(5);
    expect(tree.levels.map((l) => l.length)).toEqual([5, 3, 2, 1]);
    expect(levelSizes(5)).toEqual([5, 3, 2, 1]);
    expect(tree.levels[0]).toEqual(leaves);
    expect(tree.levels[1][2]).toEqual(leaves[4]); // promoted, not hashed with itself
    expect(tree.levels[2][1]).toEqual(leaves[4]);
    expect(tree.root).toEqual(hashNode(hashNode(hashNode(leaves[0], leaves[1]), hashNode(leaves[2], leaves[3])), leaves[4]));
    expect(tree.levels[3]).toEqual([tree.root]);
  });

  it("a one-leaf tree has the leaf as root and an empty proof", () => {
    const [leaf] = leavesOf(1);
    const tree = buildTree([leaf]);
    expect(tree.root).toEqual(leaf);
    expect(proofFor(tree, 0)).toEqual([]);
    expect(verifyProof(leaf, [], tree.root)).toBe(true);
  });
});

describe("agrees with merkletreejs and RFC 6962", () => {
  it("for every size 1..40: same root, same proof for every leaf, and every proof verifies", () => {
    for (let n = 1; n <= 40; n++) {
      const leaves = leavesOf(n);
      const ours = buildTree(leaves);
      const ref = referenceTree(leaves);
      expect(ours.root.toString("hex")).toBe(ref.getRoot().toString("hex"));
      expect(ours.root).toEqual(rfc6962Root(leaves));
      expect(ours.levels.map((l) => l.map((h) => h.toString("hex")))).toEqual(ref.getLayers().map((l: Buffer[]) => l.map((h) => h.toString("hex"))));
      for (let i = 0; i < n; i++) {
        const steps = proofFor(ours, i);
        expect(steps).toEqual(referenceProof(ref, leaves[i], i));
        expect(verifyProof(leaves[i], steps, ours.root)).toBe(true);
        expect(ref.verify(ref.getProof(leaves[i], i), leaves[i], ref.getRoot())).toBe(true);
      }
    }
  });

  it("for random larger sizes: same root and same proofs on sampled leaves", () => {
    const sizes = [257, 1000, 1023, 1025, 4097, ...Array.from({ length: 4 }, () => 41 + Math.floor(Math.random() * 20000))];
    for (const n of sizes) {
      const leaves = leavesOf(n);
      const ours = buildTree(leaves);
      const ref = referenceTree(leaves);
      expect(ours.root).toEqual(ref.getRoot());
      expect(ours.root).toEqual(rfc6962Root(leaves));
      for (const i of [0, 1, n - 2, n - 1, Math.floor(n / 2), Math.floor(Math.random() * n)]) {
        expect(proofFor(ours, i)).toEqual(referenceProof(ref, leaves[i], i));
      }
    }
  });
});

describe("engines", () => {
  it("the WebAssembly engine passed its self-test here (so the fast path is what is measured)", () => {
    expect(merkleEngineInfo().wasm).toBe(true);
  });

  it("node:crypto, WebAssembly and parallel builds give identical trees", async () => {
    const sizes = [WASM_MIN_LEAVES - 1, WASM_MIN_LEAVES, WASM_MIN_LEAVES + 3, 2049, 4099, PARALLEL_MIN_LEAVES - 1, PARALLEL_MIN_LEAVES, PARALLEL_MIN_LEAVES * 3 + 5];
    for (const n of sizes) {
      const leaves = leavesOf(n);
      const byNode = serializeTree(buildTree(leaves, { engine: "node" }));
      const byAuto = serializeTree(buildTree(leaves));
      const parallel = serializeTree(await buildTreeParallel(leaves, { threads: 3 }));
      const parallelNode = serializeTree(await buildTreeParallel(leaves, { threads: 2, engine: "node" }));
      expect(byAuto.equals(byNode)).toBe(true);
      expect(parallel.equals(byNode)).toBe(true);
      expect(parallelNode.equals(byNode)).toBe(true);
    }
    if (merkleEngineInfo().wasm) {
      const leaves = leavesOf(WASM_MIN_LEAVES + 7);
      expect(buildTree(leaves, { engine: "wasm" }).root).toEqual(buildTree(leaves, { engine: "node" }).root);
    }
    const info = merkleEngineInfo();
    expect(info.workerFailures).toBe(0);
    expect(info.lastWorkerError).toBeNull();
    expect(info.workers).toBeGreaterThan(0);
  });

  it("a 1-thread parallel build is the plain build", async () => {
    const leaves = leavesOf(PARALLEL_MIN_LEAVES + 1);
    expect((await buildTreeParallel(leaves, { threads: 1 })).root).toEqual(buildTree(leaves).root);
  });
});

describe("proofs", () => {
  const arbTree = fc.integer({ min: 1, max: 300 }).chain((n) =>
    fc.record({ leaves: fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: n, maxLength: n }), index: fc.nat({ max: n - 1 }) }),
  );
  const toTree = (leaves: Uint8Array[]) => {
    const bufs = leaves.map((l) => Buffer.from(l));
    return { bufs, tree: buildTree(bufs) };
  };

  it("every leaf's proof verifies and folds to the root", () => {
    fc.assert(
      fc.property(arbTree, ({ leaves }) => {
        const { bufs, tree } = toTree(leaves);
        bufs.forEach((leaf, i) => {
          const steps = proofFor(tree, i);
          expect(rootFromProof(leaf, steps)).toEqual(tree.root);
          expect(verifyProof(leaf, steps, tree.root)).toBe(true);
          expect(indexFromProof(tree.leafCount, steps)).toBe(i);
          expect(steps.length).toBeLessThanOrEqual(levelSizes(tree.leafCount).length - 1);
        });
      }),
      { numRuns: 60 },
    );
  });

  it("any changed byte in the leaf, a path hash or the root makes verification fail", () => {
    fc.assert(
      fc.property(arbTree, fc.nat(), fc.integer({ min: 1, max: 255 }), fc.constantFrom("leaf", "path", "root", "position"), ({ leaves }, pick, flip, target) => {
        const { bufs, tree } = toTree(leaves);
        const i = pick % bufs.length;
        const leaf = Buffer.from(bufs[i]);
        const steps = proofFor(tree, i).map((s) => ({ ...s }));
        const root = Buffer.from(tree.root);
        if (target === "leaf") leaf[pick % 32] ^= flip;
        else if (target === "root") root[pick % 32] ^= flip;
        else {
          fc.pre(steps.length > 0);
          const s = steps[pick % steps.length];
          if (target === "path") {
            const h = Buffer.from(s.hash, "hex");
            h[pick % 32] ^= flip;
            s.hash = h.toString("hex");
          } else {
            fc.pre(s.hash !== leaf.toString("hex")); // swapping equal halves changes nothing
            s.position = s.position === "left" ? "right" : "left";
          }
        }
        expect(verifyProof(leaf, steps, root)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("a dropped or added step fails", () => {
    const leaves = leavesOf(37);
    const tree = buildTree(leaves);
    const steps = proofFor(tree, 11);
    expect(verifyProof(leaves[11], steps.slice(1), tree.root)).toBe(false);
    expect(verifyProof(leaves[11], [...steps, steps[0]], tree.root)).toBe(false);
  });

  it("rejects out-of-range indices and malformed steps", () => {
    const leaves = leavesOf(6);
    const tree = buildTree(leaves);
    expect(() => proofFor(tree, 6)).toThrow(RangeError);
    expect(() => proofFor(tree, -1)).toThrow(RangeError);
    expect(() => proofFor(tree, 1.5)).toThrow(RangeError);
    const steps = proofFor(tree, 0);
    expect(() => rootFromProof(leaves[0], [{ position: "up" as "left", hash: steps[0].hash }])).toThrow(TypeError);
    expect(() => rootFromProof(leaves[0], [{ position: "left", hash: "zz" }])).toThrow(TypeError);
    expect(() => rootFromProof(Buffer.alloc(3), steps)).toThrow(TypeError);
    expect(verifyProof(leaves[0], [{ position: "left", hash: "0x" + steps[0].hash }], tree.root)).toBe(false);
    expect(verifyProof(leaves[0], steps, Buffer.alloc(31))).toBe(false);
  });

  it("proofFor also reads a plain MerkleTree object", () => {
    const leaves = leavesOf(9);
    const tree = buildTree(leaves);
    const plain: MerkleTree = { leafCount: tree.leafCount, levels: tree.levels.map((l) => [...l]), root: tree.root };
    for (let i = 0; i < 9; i++) expect(proofFor(plain, i)).toEqual(proofFor(tree, i));
    expect(serializeTree(plain)).toEqual(serializeTree(tree));
  });

  it("indexFromProof rejects paths that fit no leaf of the stated tree size", () => {
    const tree = buildTree(leavesOf(6)); // sizes 6, 3, 2, 1
    const last = proofFor(tree, 5); // leaf 5 is promoted once: 2 steps
    expect(last).toHaveLength(2);
    expect(indexFromProof(6, last)).toBe(5);
    expect(indexFromProof(6, proofFor(tree, 0))).toBe(0);
    expect(indexFromProof(6, [...last, last[0]])).toBeNull(); // too long
    expect(indexFromProof(6, last.slice(1))).toBeNull(); // too short
    expect(indexFromProof(2, proofFor(tree, 0))).toBeNull();
    expect(indexFromProof(0, [])).toBeNull();
    expect(indexFromProof(1, [])).toBe(0);
  });
});

describe("stored form", () => {
  it("serializeTree is all levels concatenated, and proofFromSerialized agrees with proofFor", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), (n) => {
        const leaves = leavesOf(n);
        const tree = buildTree(leaves);
        const buf = serializeTree(tree);
        expect(buf.length).toBe(serializedTreeLength(n));
        expect(buf).toEqual(Buffer.concat(tree.levels.flat()));
        for (let i = 0; i < n; i++) {
          const { steps, root } = proofFromSerialized(buf, n, i);
          expect(steps).toEqual(proofFor(tree, i));
          expect(root).toEqual(tree.root);
        }
        const again = deserializeTree(buf, n);
        expect(again.root).toEqual(tree.root);
        expect(proofFor(again, n - 1)).toEqual(proofFor(tree, n - 1));
      }),
      { numRuns: 40 },
    );
  });

  it("serializeTree returns a copy: changing it does not change the tree", () => {
    const tree = buildTree(leavesOf(4));
    const buf = serializeTree(tree);
    buf.fill(0);
    expect(proofFor(tree, 0)[0].hash).not.toBe("00".repeat(32));
  });

  it("works on a buffer at any byte offset (as read back from a database)", () => {
    const leaves = leavesOf(77);
    const tree = buildTree(leaves);
    const stored = serializeTree(tree);
    const shifted = Buffer.concat([Buffer.from([9]), stored]).subarray(1);
    const { steps, root } = proofFromSerialized(shifted, 77, 33);
    expect(verifyProof(leaves[33], steps, root)).toBe(true);
    const seen: string[] = [];
    forEachCompactProof(deserializeTree(shifted, 77), (i, siblings) => {
      if (i === 33) seen.push(...compactProofToSteps(77, i, siblings).map((s) => s.hash));
    });
    expect(seen).toEqual(steps.map((s) => s.hash));
  });

  it("rejects a stored tree of the wrong length and indices out of range", () => {
    const buf = serializeTree(buildTree(leavesOf(5)));
    expect(() => proofFromSerialized(buf, 6, 0)).toThrow(RangeError);
    expect(() => proofFromSerialized(buf.subarray(1), 5, 0)).toThrow(RangeError);
    expect(() => proofFromSerialized(buf, 5, 5)).toThrow(RangeError);
    expect(() => proofFromSerialized(buf, 0, 0)).toThrow(RangeError);
    expect(() => deserializeTree(buf, 4)).toThrow(RangeError);
  });
});

describe("bulk compact proofs", () => {
  it("forEachCompactProof yields, in order, exactly proofFor's siblings for every leaf", async () => {
    for (const n of [1, 2, 3, 7, 8, 9, 100, 1000, 1025, PARALLEL_MIN_LEAVES + 3]) {
      const leaves = leavesOf(n);
      const tree = n > 1000 ? await buildTreeParallel(leaves) : buildTree(leaves);
      let expected = 0;
      forEachCompactProof(tree, (i, siblings, k) => {
        expect(i).toBe(expected++);
        if (n <= 1025 || i % 97 === 0 || i >= n - 40) {
          const steps = compactProofToSteps(n, i, Buffer.from(siblings));
          expect(steps).toEqual(proofFor(tree, i));
          expect(k).toBe(steps.length);
          expect(verifyProof(leaves[i], steps, tree.root)).toBe(true);
        }
      });
      expect(expected).toBe(n);
    }
  });

  it("compactProofToSteps rejects the wrong number of siblings", () => {
    expect(() => compactProofToSteps(4, 0, Buffer.alloc(32))).toThrow(/too few/);
    expect(() => compactProofToSteps(4, 0, Buffer.alloc(96))).toThrow(/too many/);
  });
});
