// Merkle benchmark: our build + every proof vs merkletreejs (build only) vs the SHA-256 floor.
// Prints one JSON object. Usage: npx tsx bench/merkle.ts [--leaves N] [--threads T]
import { hash, randomBytes, randomUUID } from "node:crypto";
import { availableParallelism } from "node:os";
import { MerkleTree as MerkleTreeJs } from "merkletreejs";
import { ANCHOR_PAYLOAD_BYTES, anchorTransactionGas, encodeAnchorCalldata } from "../lib/anchor-payload";
import {
  buildTree,
  buildTreeParallel,
  compactProofToSteps,
  forEachCompactProof,
  HASH_BYTES,
  merkleEngineInfo,
  NODE_PREFIX,
  proofFor,
  terminateMerkleWorkers,
  verifyProof,
  type MerkleTree,
} from "../lib/merkle";
import { batchLeafHash, productLeafHash } from "../lib/proof";
import { startDevChain } from "../lib/devchain";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${name} needs a positive integer`);
  return v;
}

const LEAVES = arg("--leaves", 1_000_000);
const THREADS = arg("--threads", availableParallelism());

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const rssMb = () => round(process.resourceUsage().maxRSS / 1024, 1); // maxRSS is in KiB

// Every side hashes with the fastest one-shot SHA-256 Node has (measured: crypto.hash ≈ 1.6× createHash).
const NODE_PREFIX_BUF = Buffer.from([NODE_PREFIX]);
function merkletreejs(leaves: Buffer[]): MerkleTreeJs {
  return new MerkleTreeJs(leaves, (d: Buffer) => hash("sha256", Buffer.concat([NODE_PREFIX_BUF, d]), "buffer"), {
    hashLeaves: false,
    sortLeaves: false,
    sortPairs: false,
    duplicateOdd: false,
  });
}

async function ours(
  leaves: Buffer[],
): Promise<{ tree: MerkleTree; proofs: number; steps: number; checksum: number; buildSeconds: number; totalSeconds: number }> {
  const start = process.hrtime.bigint();
  const tree = await buildTreeParallel(leaves, { threads: THREADS });
  const buildSeconds = seconds(start);
  let proofs = 0;
  let steps = 0;
  let checksum = 0;
  // Each proof is touched (first and last sibling byte) so the work cannot be skipped.
  forEachCompactProof(tree, (_i, siblings, k) => {
    proofs++;
    steps += k;
    if (k > 0) checksum = (checksum + siblings[0] + siblings[k * HASH_BYTES - 1]) | 0;
  });
  return { tree, proofs, steps, checksum, buildSeconds, totalSeconds: seconds(start) };
}

function limit(count: number): number {
  const input = Buffer.alloc(1 + 2 * HASH_BYTES);
  input[0] = NODE_PREFIX;
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    input[1] = i & 0xff;
    sink ^= (hash("sha256", input, "buffer") as unknown as Buffer)[0];
  }
  const s = seconds(start);
  if (sink === -1) console.error(sink); // keeps the loop observable
  return s;
}

/**
 * Gas per anchored product, measured: a period of `batches` × `perBatch` products (real product
 * leaves with salts, each batch its own tree, the period tree over the batch leaves) anchored by a
 * real transaction on the in-process dev chain; gasUsed is read from its receipt.
 */
async function measuredAnchorGas(batches: number, perBatch: number) {
  const tenant = randomUUID();
  const start = process.hrtime.bigint();
  const batchLeaves: Buffer[] = [];
  for (let b = 0; b < batches; b++) {
    const batchId = randomUUID();
    const leaves: Buffer[] = new Array(perBatch);
    for (let i = 0; i < perBatch; i++)
      leaves[i] = productLeafHash({ tag_id: randomUUID(), tenant_id: tenant, batch_id: batchId, sku: "SKU-1", name: "Product", serial: `SN-${b}-${i}`, gtin: null, lot: null, salt: randomBytes(16).toString("hex") });
    const tree = await buildTreeParallel(leaves, { threads: THREADS });
    batchLeaves.push(batchLeafHash(batchId, tree.root.toString("hex")));
  }
  const period = buildTree(batchLeaves);
  const treesSeconds = seconds(start);
  const chain = startDevChain({ dataDir: null, chainId: 1337 });
  try {
    const data = encodeAnchorCalldata(period.root);
    const txHash = await chain.sendData(data, { nonce: await chain.pendingNonce() });
    const receipt = await chain.receipt(txHash);
    if (!receipt || receipt.status !== 1) throw new Error("anchor transaction not mined");
    const products = batches * perBatch;
    const gasUsed = Number(receipt.gasUsed);
    return {
      period: `${batches} batches x ${perBatch.toLocaleString("en")} products = ${products.toLocaleString("en")} products, one anchor transaction`,
      measured_on: "in-process dev chain (ganache, shanghai rules), real transaction, gasUsed from its receipt",
      tx_hash: txHash,
      gas_used: gasUsed,
      gas_expected_from_calldata: anchorTransactionGas(data),
      gas_per_product: round(gasUsed / products, 6),
      cost_at_20_gwei_eth: round((gasUsed * 20e9) / 1e18, 8),
      cost_per_product_at_20_gwei_eth: (gasUsed * 20e9) / 1e18 / products,
      build_trees_seconds: round(treesSeconds),
    };
  } finally {
    await chain.close();
  }
}

async function main(): Promise<void> {
  // Leaf hashes first, shared by every side: views into one random block.
  const pool = randomBytes(LEAVES * HASH_BYTES);
  const leaves: Buffer[] = new Array(LEAVES);
  for (let i = 0; i < LEAVES; i++) leaves[i] = pool.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);

  // Warm-up (JIT, WebAssembly tier-up, worker start-up) on a small tree, for all sides alike.
  const warm = leaves.slice(0, Math.min(LEAVES, 1 << 16));
  await ours(warm);
  merkletreejs(warm);
  limit(warm.length);
  const rssAfterWarmup = rssMb();

  // (c) the floor: n-1 one-shot SHA-256 calls on 65-byte inputs, single-threaded.
  const limitSeconds = limit(LEAVES - 1);
  // (a) ours: build + every proof.
  const a = await ours(leaves);
  const oursSeconds = a.totalSeconds;
  const rssAfterOurs = rssMb();
  // (b) merkletreejs: build only; keep just its root so its layers can be collected.
  const t0 = process.hrtime.bigint();
  const jsRoot = merkletreejs(leaves).getRoot();
  const jsSeconds = seconds(t0);

  // For reference: what each ingredient contributes.
  const timeIt = async (f: () => unknown) => {
    const t = process.hrtime.bigint();
    await f();
    return round(seconds(t));
  };
  const reference = {
    build_1_thread_wasm_seconds: await timeIt(() => buildTree(leaves)),
    build_1_thread_node_crypto_seconds: await timeIt(() => buildTree(leaves, { engine: "node" })),
    build_parallel_node_crypto_seconds: await timeIt(() => buildTreeParallel(leaves, { threads: THREADS, engine: "node" })),
  };
  const single = buildTree(leaves, { engine: "node" });

  // Proofs as hex ProofStep[] (the API / JSON form), timed on a sample.
  const sample = Math.min(LEAVES, 100_000);
  const t2 = process.hrtime.bigint();
  for (let i = 0; i < sample; i++) proofFor(a.tree, Math.floor((i * LEAVES) / sample));
  const hexProofsPerSecond = sample / seconds(t2);

  // Correctness, outside the timed regions: sampled proofs (both forms) verify against the root.
  let spotOk = true;
  const probes = new Set(Array.from({ length: 1000 }, () => Math.floor(Math.random() * LEAVES)));
  for (const i of probes) if (!verifyProof(leaves[i], proofFor(a.tree, i), a.tree.root)) spotOk = false;
  forEachCompactProof(a.tree, (i, siblings) => {
    if (probes.has(i) && !verifyProof(leaves[i], compactProofToSteps(LEAVES, i, siblings), a.tree.root)) spotOk = false;
  });

  // Gas: one anchor transaction per period of 10 batches × 100,000 products, sent and measured;
  // the calldata formula (the 8 magic bytes are non-zero, a random root has 1/256 zero bytes on
  // average) alongside.
  const periodProducts = 10 * 100_000;
  const gasThisRoot = anchorTransactionGas(encodeAnchorCalldata(a.tree.root));
  const gasWorst = anchorTransactionGas(encodeAnchorCalldata(Buffer.alloc(32, 0xff)));
  const gasMeasured = await measuredAnchorGas(10, 100_000);

  const engine = merkleEngineInfo();
  await terminateMerkleWorkers();
  console.log(
    JSON.stringify(
      {
        command: `bench/merkle.ts --leaves ${LEAVES} --threads ${THREADS}`,
        leaves: LEAVES,
        threads: THREADS,
        cores: availableParallelism(),
        node: process.version,
        engine: { wasm_simd_node_hasher: engine.wasm, worker_failures: engine.workerFailures },
        ours_build_seconds: round(a.buildSeconds),
        ours_build_and_all_proofs_seconds: round(oursSeconds),
        ours_proofs_generated: a.proofs,
        ours_proofs_form: "compact: sibling hashes bottom-up, positions implied by (leaf_count, index)",
        ours_proof_steps_total: a.steps,
        ours_proof_checksum: a.checksum,
        merkletreejs_build_seconds: round(jsSeconds),
        limit_sha256_65b_seconds: round(limitSeconds),
        limit_hashes: LEAVES - 1,
        ratio_merkletreejs_over_ours: round(jsSeconds / oursSeconds, 2),
        ratio_ours_over_limit: round(oursSeconds / limitSeconds, 2),
        targets_met: { merkletreejs_over_ours_ge_4: jsSeconds / oursSeconds >= 4, ours_over_limit_le_1_5: oursSeconds / limitSeconds <= 1.5 },
        reference,
        hex_proofs_per_second: Math.round(hexProofsPerSecond),
        roots_equal: a.tree.root.equals(jsRoot) && single.root.equals(a.tree.root),
        spot_checks_ok: spotOk,
        root: a.tree.root.toString("hex"),
        peak_rss_mb: { after_warmup: rssAfterWarmup, after_ours: rssAfterOurs, end: rssMb() },
        gas: {
          measured: gasMeasured,
          computed: {
            calldata_bytes: ANCHOR_PAYLOAD_BYTES,
            tx_gas_this_root: gasThisRoot,
            tx_gas_worst_case: gasWorst,
            gas_per_product: round(gasThisRoot / periodProducts, 6),
            gas_per_product_worst_case: round(gasWorst / periodProducts, 6),
          },
        },
      },
      null,
      2,
    ),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
