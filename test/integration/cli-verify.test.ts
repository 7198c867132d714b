// `npx voketag verify proof.json --rpc URL`: the CLI checks a proof anchored by a real transaction on
// a JSON-RPC dev chain, with nothing but lib/ and that RPC; a tampered proof fails with the failing
// check named; exit status 0 valid, 1 not valid, 2 usage error or not a proof document.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import http from "node:http";
import crypto from "node:crypto";
import { execFile } from "node:child_process";
import { startDevChainServer } from "../../lib/devchain";
import { connectRpc, type ChainClient } from "../../lib/chain";
import { buildTree, proofFor } from "../../lib/merkle";
import { encodeAnchorCalldata } from "../../lib/anchor-payload";
import { batchLeafHash, buildProofDocument, ledgerHeadLeafHash, productLeafHash, type ProofDocument } from "../../lib/proof";
import { freePort } from "../support/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "voketag.js");

function run(args: string[], opts: { stdin?: string; npx?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const [cmd, argv] = opts.npx ? ["npx", ["--no-install", "voketag", ...args]] : [process.execPath, [BIN, ...args]];
    const child = execFile(cmd, argv, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 60_000 }, (err: any, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 99) : 0, stdout, stderr }),
    );
    if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
    else child.stdin!.end();
  });
}

describe("voketag verify (CLI)", () => {
  let dir: string;
  let chainServer: { url: string; close(): Promise<void> };
  let chain: ChainClient;
  let doc: ProofDocument;
  let file: string;
  let issuer: http.Server;
  let issuerUrl: string;
  let published: string[] = [];

  const write = (name: string, value: unknown) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, typeof value === "string" ? value : JSON.stringify(value, null, 2));
    return f;
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-cli-"));
    const key = "0x" + crypto.randomBytes(32).toString("hex");
    chainServer = await startDevChainServer({ port: await freePort(), chainId: 31337, privateKey: key });
    chain = connectRpc(chainServer.url, key);
    // A batch of 5 in a period with two other leaves, anchored by a real transaction.
    const batchId = crypto.randomUUID();
    const products = [0, 1, 2, 3, 4].map((i) => ({
      tag_id: crypto.randomUUID(),
      tenant_id: crypto.randomUUID(),
      batch_id: batchId,
      sku: "OIL-500",
      name: "Olive oil 500 ml",
      serial: `CLI-${i}`,
      gtin: i % 2 ? "09506000134352" : null,
      lot: null,
      salt: crypto.randomBytes(16).toString("hex"),
    }));
    const batchTree = buildTree(products.map(productLeafHash));
    const periodTree = buildTree([
      batchLeafHash(crypto.randomUUID(), crypto.randomBytes(32).toString("hex")),
      batchLeafHash(batchId, batchTree.root.toString("hex")),
      ledgerHeadLeafHash({ partition: "scan-0", seq: 7, hash: crypto.randomBytes(32).toString("hex") }),
    ]);
    const txHash = await chain.sendData(encodeAnchorCalldata(periodTree.root), { nonce: 0 });
    const receipt = (await chain.receipt(txHash))!;
    await chain.request("evm_mine", []); // 2 confirmations
    doc = buildProofDocument({
      product: products[3],
      batch: { id: batchId, root: batchTree.root, leaf_count: 5, path: proofFor(batchTree, 3) },
      period: { id: "p-1", root: periodTree.root, path: proofFor(periodTree, 1) },
      anchor: { chain_id: 31337, tx_hash: txHash, block_number: receipt.blockNumber, address: chain.address, confirmations_required: 2 },
      issuer_url: "https://verify.voketag.example",
    });
    file = write("proof.json", doc);
    published = [chain.address];
    issuer = http.createServer((req, res) => {
      if (req.url !== "/.well-known/voketag.json") return res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ name: "VokeTag", chains: [{ chain_id: 31337, anchoring_addresses: published }] }));
    });
    await new Promise<void>((r) => issuer.listen(0, "127.0.0.1", r));
    issuerUrl = `http://127.0.0.1:${(issuer.address() as any).port}`;
  });

  afterAll(async () => {
    await chain?.close();
    await chainServer?.close();
    issuer?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("npx voketag verify proof.json --rpc URL: a real anchor verifies, every check named, exit 0", async () => {
    const r = await run(["verify", file, "--rpc", chainServer.url], { npx: true });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    for (const name of ["leaf", "batch_path", "batch_leaf", "period_path", "transaction", "sender", "chain", "block", "confirmations"])
      expect(r.stdout).toMatch(new RegExp(`✓ ${name}\\b`));
    expect(r.stdout).toMatch(/VALID: 9 of 9 checks passed/);
  });

  it("a tampered proof fails with the failing checks named, exit 1; --json prints {valid, checks}", async () => {
    const tampered = JSON.parse(JSON.stringify(doc));
    tampered.batch.path[0].hash = (tampered.batch.path[0].hash[0] === "a" ? "b" : "a") + tampered.batch.path[0].hash.slice(1);
    const r = await run(["verify", write("tampered.json", tampered), "--rpc", chainServer.url]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ batch_path/);
    expect(r.stdout).toMatch(/NOT VALID: 1 of 9 checks failed/);
    const j = await run(["verify", write("tampered.json", tampered), "--rpc", chainServer.url, "--json"]);
    const out = JSON.parse(j.stdout);
    expect(out.valid).toBe(false);
    expect(out.checks.filter((c: any) => !c.ok).map((c: any) => c.name)).toEqual(["batch_path"]);
  });

  it("who may anchor: --trusted-address and --issuer (the instance's /.well-known/voketag.json)", async () => {
    const other = "0x" + crypto.randomBytes(20).toString("hex");
    const untrusted = await run(["verify", file, "--rpc", chainServer.url, "--trusted-address", other]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stdout).toMatch(/✗ sender .*not a trusted/);
    expect((await run(["verify", file, "--rpc", chainServer.url, "--issuer", issuerUrl])).code).toBe(0);
    published = [other]; // an issuer that never anchored with this address
    const copied = await run(["verify", file, "--rpc", chainServer.url, "--issuer", issuerUrl]);
    expect(copied.code).toBe(1);
    expect(copied.stdout).toMatch(/✗ sender/);
    published = [chain.address];
  });

  it("--min-confirmations, --offline, stdin, and an unreachable RPC", async () => {
    const strict = await run(["verify", file, "--rpc", chainServer.url, "--min-confirmations", "50"]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/✗ confirmations +2 confirmation\(s\), 50 required/);
    const offline = await run(["verify", "-", "--offline"], { stdin: JSON.stringify(doc) });
    expect(offline.code).toBe(0);
    expect(offline.stdout).toMatch(/VALID: 4 of 4 checks passed/);
    const down = await run(["verify", file, "--rpc", `http://127.0.0.1:${await freePort()}`, "--timeout", "3"]);
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/✗ transaction +chain reader failed: .*cannot reach/);
  });

  it("usage errors and documents that are not proofs: exit 2 with the reason", async () => {
    expect((await run([])).code).toBe(2);
    expect((await run(["frobnicate"])).stderr).toMatch(/unknown command/);
    const noRpc = await run(["verify", file]);
    expect(noRpc.code).toBe(2);
    expect(noRpc.stderr).toMatch(/--rpc <url> is required/);
    const garbage = await run(["verify", write("garbage.json", "{not json"), "--offline"]);
    expect(garbage.code).toBe(2);
    expect(garbage.stderr).toMatch(/not valid JSON/);
    const partial = await run(["verify", write("partial.json", { version: "voketag-proof/1", product: {} }), "--offline"]);
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(/product\.tag_id: expected a string/);
    expect((await run(["verify", path.join(dir, "missing.json"), "--offline"])).stderr).toMatch(/cannot read/);
    const help = await run(["verify", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: voketag verify/);
  });
});
