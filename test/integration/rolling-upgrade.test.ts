// docs/RUNBOOK-upgrades.md, run for real: migrations are expand-then-contract, so the previous
// release keeps working on a database the new release has already migrated. The previous release
// is the newest commit whose migrations/ differ from this tree's (or VOKETAG_UPGRADE_FROM),
// extracted with `git archive` into a temp dir that shares node_modules by symlink. The new code
// starts first and migrates; then the previous code starts on the same database; both serve a
// journey subset (login, tenant, key, batch registration, scans) on data the other one wrote,
// and the ledger verifies. The two run as separate clusters (namespaces) on one database: this
// checks the schema contract; the RPC contract between versions is the runbook's other rule.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { ADMIN } from "../support/journey";
import { client, until } from "../support/http";

const ROOT = path.resolve(__dirname, "..", "..");

function git(args: string[]) {
  const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const SOURCE_DIRS = ["bin", "lib", "mixins", "services"];

/** Does every relative import of the tree's runtime code resolve inside it? (Commits made while
 *  other work was uncommitted can name files they do not contain: they cannot be a release.) */
function treeIsComplete(dir: string): string | null {
  const files = [path.join(dir, "moleculer.config.ts")];
  for (const d of SOURCE_DIRS) if (fs.existsSync(path.join(dir, d))) files.push(...fs.readdirSync(path.join(dir, d)).filter((f) => f.endsWith(".ts")).map((f) => path.join(dir, d, f)));
  for (const f of files.filter((x) => fs.existsSync(x))) {
    for (const m of fs.readFileSync(f, "utf8").matchAll(/(?:from|require\()\s*"(\.{1,2}\/[^"]+)"/g)) {
      const t = path.resolve(path.dirname(f), m[1]);
      if (![t, t + ".ts", path.join(t, "index.ts"), t + ".json"].some((x) => fs.existsSync(x))) return `${path.relative(dir, f)} imports ${m[1]}, which the commit lacks`;
    }
  }
  return null;
}

function extract(commit: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-prev-"));
  const archive = spawnSync("sh", ["-c", `git archive --format=tar ${commit} | tar -x -C "${dir}"`], { cwd: ROOT, encoding: "utf8" });
  if (archive.status !== 0) throw new Error(`git archive: ${archive.stderr}`);
  return dir;
}

/**
 * The previous release: VOKETAG_UPGRADE_FROM_DIR (a source tree), VOKETAG_UPGRADE_FROM (a commit),
 * or the newest commit whose migrations differ from the working tree's (name and content) and
 * whose code is complete. Returns its extracted tree.
 */
function previousRelease(skipped: string[]): { commit: string; migrations: string[]; dir: string } | null {
  const migrationsOf = (dir: string) => fs.readdirSync(path.join(dir, "migrations")).filter((f) => f.endsWith(".sql")).sort();
  if (process.env.VOKETAG_UPGRADE_FROM_DIR) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-prev-"));
    fs.cpSync(process.env.VOKETAG_UPGRADE_FROM_DIR, dir, { recursive: true, filter: (src) => !/node_modules|\.git$/.test(src) });
    return { commit: `dir:${process.env.VOKETAG_UPGRADE_FROM_DIR}`, migrations: migrationsOf(dir), dir };
  }
  if (process.env.VOKETAG_UPGRADE_FROM) {
    const commit = git(["rev-parse", process.env.VOKETAG_UPGRADE_FROM]).trim();
    const dir = extract(commit);
    return { commit, migrations: migrationsOf(dir), dir };
  }
  const dir = path.join(ROOT, "migrations");
  const current = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .map((f) => `${f} ${git(["hash-object", path.join(dir, f)]).trim()}`)
    .join("\n");
  for (const commit of git(["rev-list", "--max-count=200", "HEAD"]).split("\n").filter(Boolean)) {
    const tree = git(["ls-tree", commit, "migrations/"])
      .split("\n")
      .filter((l) => l.endsWith(".sql"))
      .map((l) => {
        const [meta, name] = l.split("\t");
        return `${path.basename(name)} ${meta.split(" ")[2]}`;
      })
      .sort()
      .join("\n");
    if (!tree || tree === current) continue;
    const dir = extract(commit);
    const missing = treeIsComplete(dir);
    if (!missing) return { commit, migrations: migrationsOf(dir), dir };
    skipped.push(`${commit.slice(0, 10)}: ${missing}`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return null;
}

/** startNode, from another source tree. */
async function startOldNode(cwd: string, env: Record<string, string>, logs: string[]): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(cwd, "bin", "node.ts")], { cwd, env: { ...process.env, LOG_LEVEL: "info", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`previous release did not start:\n${logs.slice(-30).join("\n")}`)), 60_000);
    const onData = (b: Buffer) => {
      for (const line of b.toString().split("\n").filter(Boolean)) {
        logs.push(line);
        if (/HTTP listening/.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`previous release exited with ${code}:\n${logs.slice(-30).join("\n")}`));
    });
  });
  return proc;
}

describe("rolling upgrade: the previous release on a database the new one migrated", () => {
  let available = false;
  let cluster: ClusterEnv;
  let fresh: NodeHandle | undefined;
  let old: ChildProcess | undefined;
  let oldDir = "";
  let from: { commit: string; migrations: string[]; dir: string } | null = null;
  const oldLogs: string[] = [];
  const probes: ServiceBroker[] = [];

  beforeAll(async () => {
    available = await needServices("rolling-upgrade", ["postgres", "redis", "nats"]);
    if (!available) return;
    const skipped: string[] = [];
    try {
      from = previousRelease(skipped);
    } catch (err) {
      from = null;
      skipped.push((err as Error).message);
    }
    if (!from) {
      // Not a missing service: there is no earlier release to upgrade from (a fresh repository, a
      // tarball, or only commits that cannot run). Loud, but not a failure.
      const msg = `rolling-upgrade: no earlier release to upgrade from (set VOKETAG_UPGRADE_FROM or VOKETAG_UPGRADE_FROM_DIR)${skipped.length ? `; commits passed over:\n   ${skipped.slice(0, 10).join("\n   ")}` : ""}`;
      console.warn(`\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!! SKIPPED ${msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`);
      available = false;
      return;
    }
    oldDir = from.dir;
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(oldDir, "node_modules"));
    cluster = await createClusterEnv("upgrade");
  });

  afterAll(async () => {
    for (const p of probes) await p.stop();
    if (old && old.exitCode === null && !old.signalCode) {
      old.kill("SIGTERM");
      await new Promise((r) => old!.once("exit", r));
    }
    await fresh?.stop();
    await cluster?.close();
    if (oldDir) fs.rmSync(oldDir, { recursive: true, force: true });
  });

  it("both releases serve registrations and scans on one database, and the ledger verifies", async () => {
    if (!available) return;
    const current = fs.readdirSync(path.join(ROOT, "migrations")).filter((f) => f.endsWith(".sql"));
    // Expand-then-contract starts with: a new release never deletes or renames an applied migration.
    for (const m of from!.migrations) expect([m, current.includes(m)]).toEqual([m, true]);

    const common = { ...cluster.env, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    const newPort = await freePort();
    const oldPort = await freePort();
    const nsNew = `${cluster.env.VOKETAG_NAMESPACE}-new`;
    const nsOld = `${cluster.env.VOKETAG_NAMESPACE}-old`;
    // 1. The new release starts first and migrates the database (the runbook's "expand" step).
    fresh = await startNode({ ...common, VOKETAG_NAMESPACE: nsNew, PORT: String(newPort), VERIFICATION_URL_BASE: `http://127.0.0.1:${newPort}`, NODE_ID: "release-new" });
    // 2. The previous release on the migrated database: it finds nothing to apply and must work.
    old = await startOldNode(oldDir, { ...common, VOKETAG_NAMESPACE: nsOld, PORT: String(oldPort), VERIFICATION_URL_BASE: `http://127.0.0.1:${oldPort}`, NODE_ID: "release-old" }, oldLogs);
    expect(oldLogs.join("\n")).not.toMatch(/migrations applied/);

    const apiNew = client(`http://127.0.0.1:${newPort}`);
    const apiOld = client(`http://127.0.0.1:${oldPort}`);
    const jwt = async (api: ReturnType<typeof client>) => {
      const r = await api.post("/v1/auth/login", ADMIN);
      expect(r.status).toBe(200);
      return { authorization: `Bearer ${r.body.access_token}` };
    };
    const jwtNew = await jwt(apiNew);
    const jwtOld = await jwt(apiOld);
    // A tenant made by one release, its key by the other.
    const tenant = await apiNew.post("/v1/admin/tenants", { name: "Upgrade Co" }, jwtNew);
    expect(tenant.status).toBe(201);
    const keyRes = await apiOld.post(`/v1/admin/tenants/${tenant.body.id}/api-keys`, { name: "line" }, jwtOld);
    expect(keyRes.status).toBe(201);
    const key = { "x-api-key": keyRes.body.key };

    // Each release registers a batch; the other reads it and scans its tags.
    const batch = (api: ReturnType<typeof client>, tag: string) =>
      api.post("/v1/batches", { name: `made by ${tag}`, products: [1, 2].map((i) => ({ sku: `S-${tag}`, name: `Watch ${tag}`, serial: `${tag}-${i}-${crypto.randomBytes(3).toString("hex")}` })) }, key);
    const bOld = await batch(apiOld, "old");
    const bNew = await batch(apiNew, "new");
    expect([bOld.status, bNew.status]).toEqual([202, 202]);
    for (const [id, reader] of [[bOld.body.id, apiNew], [bNew.body.id, apiOld]] as const) {
      await until(() => reader.get(`/v1/batches/${id}`, key), (r) => ["registered", "anchoring", "anchored"].includes(r.body.status), 30_000);
      const products = await reader.get(`/v1/batches/${id}/products`, key);
      expect(products.body.items).toHaveLength(2);
      for (const p of products.body.items) {
        for (const scanner of [apiNew, apiOld]) {
          const s = await scanner.post("/v1/scan", { token: p.token });
          expect([p.id, s.status, s.body.verdict]).toEqual([p.id, 200, "authentic"]);
        }
      }
    }

    // The ledger both wrote to verifies, seen from either release.
    for (const ns of [nsNew, nsOld]) {
      const probe = new ServiceBroker({ namespace: ns, nodeID: `probe-${ns}`, transporter: { type: "NATS", options: { url: cluster.env.TRANSPORTER } }, serializer: "JSONExt", logger: false });
      probes.push(probe);
      await probe.start();
      await probe.waitForServices(["scan"], 20_000);
      const v: any = await probe.call("scan.verifyLedger");
      expect([ns, v.ok]).toEqual([ns, true]);
      expect(v.partitions.reduce((n: number, p: any) => n + p.count, 0)).toBe(8);
    }

    // 3. The previous release stops (the rollout's end); the new one carries on.
    old.kill("SIGTERM");
    await new Promise((r) => old!.once("exit", r));
    expect((await apiNew.get("/v1/ready")).status).toBe(200);
    console.log(`rolling-upgrade: previous release ${from!.commit.startsWith("dir:") ? from!.commit : from!.commit.slice(0, 10)} (${from!.migrations.length} migrations) and this tree (${current.length}) on one database`);
  }, 240_000);
});
