// docs/RUNBOOK-backup-restore.md, run for real: a node on the real Postgres registers, anchors and
// scans (the journey); pg_dump takes a live backup; pg_restore puts it in a fresh database; a new
// node started on the restored database sees a ledger whose hash chain verifies, verifies the
// proof taken before the backup, serves the same proof, accepts the same logins and tags, and
// keeps appending to the ledger without breaking its chain.
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { ServiceBroker } from "moleculer";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices, SERVICES } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { runJourney, ADMIN } from "../support/journey";
import { client } from "../support/http";

describe("backup and restore (docs/RUNBOOK-backup-restore.md)", () => {
  let available = false;
  let cluster: ClusterEnv;
  let before: NodeHandle | undefined;
  let after: NodeHandle | undefined;
  let probe: ServiceBroker | undefined;
  let restoredDb = "";
  let dumpDir = "";

  beforeAll(async () => {
    available = await needServices("backup-restore", ["postgres", "redis", "nats"]);
    if (!available) return;
    for (const tool of ["pg_dump", "pg_restore"]) if (spawnSync(tool, ["--version"]).status !== 0) throw new Error(`${tool} is not installed (postgresql-client)`);
    cluster = await createClusterEnv("backup");
    dumpDir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-backup-"));
  });

  afterAll(async () => {
    await probe?.stop();
    await before?.stop();
    await after?.stop();
    if (restoredDb) {
      const c = new Client({ connectionString: SERVICES.postgres.url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${restoredDb} WITH (FORCE)`).catch(() => undefined);
      await c.end();
    }
    await cluster?.close();
    if (dumpDir) fs.rmSync(dumpDir, { recursive: true, force: true });
  });

  it("restores into a fresh database where the ledger and the proofs still verify", async () => {
    if (!available) return;
    const portA = await freePort();
    const baseA = `http://127.0.0.1:${portA}`;
    const common = { ...cluster.env, ANCHOR_INTERVAL: "1", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    before = await startNode({ ...common, PORT: String(portA), VERIFICATION_URL_BASE: baseA, NODE_ID: "before-backup" });
    const j = await runJourney(baseA);
    const api = client(baseA);
    const [p0, p1] = j.products;
    for (const p of [p0, p1, p0]) expect((await api.post("/v1/scan", { token: p.token })).body.verdict).toBe("authentic");
    const proof = (await api.get(`/v1/products/${p0.id}/proof`)).body;
    expect((await api.post("/v1/verify/proof", proof)).body.valid).toBe(true);

    // 1. The backup, taken live (RUNBOOK step "Back up"): one consistent snapshot, custom format.
    const dump = path.join(dumpDir, "voketag.dump");
    const t0 = Date.now();
    const d = spawnSync("pg_dump", ["--format=custom", "--no-owner", "--no-privileges", `--file=${dump}`, `--dbname=${cluster.databaseUrl}`], { encoding: "utf8" });
    expect([d.status, d.stderr]).toEqual([0, ""]);
    const dumpMs = Date.now() - t0;
    await before.stop();
    before = undefined;

    // 2. The restore into a fresh database (RUNBOOK step "Restore").
    restoredDb = `vk_restored_${crypto.randomBytes(4).toString("hex")}`;
    const admin = new Client({ connectionString: SERVICES.postgres.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${restoredDb}`);
    await admin.end();
    const u = new URL(SERVICES.postgres.url);
    u.pathname = `/${restoredDb}`;
    const t1 = Date.now();
    const r = spawnSync("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", `--dbname=${u.toString()}`, dump], { encoding: "utf8" });
    expect([r.status, r.stderr]).toEqual([0, ""]);
    const restoreMs = Date.now() - t1;

    // 3. A node on the restored database (its own namespace: nothing reaches it from the old one).
    const portB = await freePort();
    const baseB = `http://127.0.0.1:${portB}`;
    const namespace = `${cluster.env.VOKETAG_NAMESPACE}-restored`;
    after = await startNode({ ...common, DATABASE_URL: u.toString(), VOKETAG_NAMESPACE: namespace, PORT: String(portB), VERIFICATION_URL_BASE: baseA, NODE_ID: "after-restore" });
    const apiB = client(baseB);
    expect((await apiB.get("/v1/ready")).status).toBe(200);

    // The ledger: every scan is there and the hash chain verifies end to end.
    probe = new ServiceBroker({ namespace, nodeID: "restore-probe", transporter: { type: "NATS", options: { url: cluster.env.TRANSPORTER } }, serializer: "JSONExt", logger: false });
    await probe.start();
    await probe.waitForServices(["scan"], 20_000);
    const ledger: any = await probe.call("scan.verifyLedger");
    expect(ledger.ok).toBe(true);
    const entries = ledger.partitions.reduce((n: number, p: any) => n + p.count, 0);
    expect(entries).toBeGreaterThanOrEqual(5); // the journey's scans, the page view and three more
    // The operators' tool from the runbook says the same.
    const tool = spawnSync(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "..", "scripts", "verify-ledger.ts")], {
      env: { ...process.env, ...cluster.env, DATABASE_URL: u.toString(), VOKETAG_NAMESPACE: namespace },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect([tool.status, tool.stdout.trim().split("\n").pop()]).toEqual([0, "ledger: every partition verifies"]);

    // The proof taken before the backup still verifies, and the restored node serves the same one.
    const verified = await apiB.post("/v1/verify/proof", proof);
    expect(verified.status).toBe(200);
    expect(verified.body.valid).toBe(true);
    const again = (await apiB.get(`/v1/products/${p0.id}/proof`)).body;
    expect(again.anchor.tx_hash).toBe(proof.anchor.tx_hash);
    expect(again.batch.root).toBe(proof.batch.root);
    expect((await apiB.get(`/v1/verify/${j.batchId}`)).body.valid).toBe(true);

    // Users, keys and tag signing keys came back with the data: logins and old tags still work.
    expect((await apiB.post("/v1/auth/login", ADMIN)).status).toBe(200);
    expect((await apiB.get(`/v1/batches/${j.batchId}`, j.key)).body.status).toBe("anchored");
    const scan = await apiB.post("/v1/scan", { token: p1.token });
    expect(scan.body.verdict).toBe("authentic");
    expect(scan.body.scan.count).toBe(2);
    // New entries continue the restored chain.
    const ledger2: any = await probe.call("scan.verifyLedger");
    expect(ledger2.ok).toBe(true);
    expect(ledger2.partitions.reduce((n: number, p: any) => n + p.count, 0)).toBe(entries + 1);
    console.log(`backup-restore: pg_dump ${dumpMs} ms (${fs.statSync(dump).size} bytes), pg_restore ${restoreMs} ms, ${entries} ledger entries verified`);
  }, 240_000);
});
