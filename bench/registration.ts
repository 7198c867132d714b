// Registration benchmark (issue 3): one N-product batch (default 1,000,000) against the real Postgres,
// from the CSV request to `registered`, beside the limit measured in the same run: a raw COPY of the
// same rows into the same indexed products table. Prints one JSON object.
//
// Usage: npm run bench:registration [-- --products N] [--database-url postgres://…]
// The node under test is a real VokeTag process (SERVICES=api,factory,admin on this Postgres);
// its peak RSS is read from /proc (VmHWM).
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, ChildProcess } from "node:child_process";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Client } from "pg";
import { freePort } from "../test/support/node-process";
import { from as copyFrom } from "pg-copy-streams";
import { productLeafHash } from "../lib/proof";
import { copyField } from "../lib/products";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1];
}
const N = Number(arg("--products", "1000000"));
const PG = arg("--database-url", process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test");
const ROOT = path.resolve(__dirname, "..");
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const GTIN = "09506000134352";

/** Peak resident set of a process, MiB (Linux VmHWM). */
function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? round(Number(m[1]) / 1024) : NaN;
}

function currentRssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? round(Number(m[1]) / 1024) : NaN;
}

function csvRow(i: number): string {
  return `W-${i % 10},"Watch, model ${i % 10}",SN${i},${i % 3 === 2 ? "" : GTIN},L${i % 7},"{""i"":${i}}"\n`;
}

async function startVoketag(env: Record<string, string>): Promise<{ proc: ChildProcess; timings: Record<string, unknown>[]; stop: () => Promise<void> }> {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "node.ts")], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  const timings: Record<string, unknown>[] = [];
  proc.stdout!.on("data", (b: Buffer) => {
    for (const line of b.toString().split("\n"))
      if (line.includes("registration timings")) {
        try {
          const { batch_id: _b, products: _p, msg: _m, level: _l, time: _t, nodeID: _n, ns: _s, mod: _o, svc: _v, request_id: _r, ...t } = JSON.parse(line);
          timings.push(t);
        } catch {
          /* not JSON */
        }
      }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start:\n${tail.join("\n")}`)), 90_000);
    const onData = (b: Buffer) => {
      for (const line of b.toString().split("\n")) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > 30) tail.shift();
        if (/HTTP listening/.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`node exited with ${code}:\n${tail.join("\n")}`)));
  });
  return {
    proc,
    timings,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}

async function json(res: Response) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function main() {
  const dbName = `vk_bench_reg_${crypto.randomBytes(4).toString("hex")}`;
  const admin = new Client({ connectionString: PG });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const u = new URL(PG);
  u.pathname = `/${dbName}`;
  const dbUrl = u.toString();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vk-bench-reg-"));
  let node: Awaited<ReturnType<typeof startVoketag>> | null = null;
  const db = new Client({ connectionString: dbUrl });
  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    node = await startVoketag({
      DATABASE_URL: dbUrl,
      PORT: String(port),
      SERVICES: "api,factory,admin",
      VOKETAG_DATA_DIR: tmp,
      VOKETAG_NAMESPACE: dbName,
      VERIFICATION_URL_BASE: base,
      VOKETAG_ADMIN_EMAIL: "bench@voketag.test",
      VOKETAG_ADMIN_PASSWORD: "correct horse battery staple",
      RATE_LIMIT_KEY: "1000000",
    });
    await db.connect();
    const login = await json(await fetch(`${base}/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: "bench@voketag.test", password: "correct horse battery staple" }) }));
    const jwt = { authorization: `Bearer ${login.access_token}`, "content-type": "application/json" };
    const tenant = await json(await fetch(`${base}/v1/admin/tenants`, { method: "POST", headers: jwt, body: JSON.stringify({ name: "Bench" }) }));
    const key = (await json(await fetch(`${base}/v1/admin/tenants/${tenant.id}/api-keys`, { method: "POST", headers: jwt, body: JSON.stringify({ name: "bench" }) }))).key;

    // The file, written before anything is timed.
    const csvPath = path.join(tmp, "products.csv");
    const out = fs.createWriteStream(csvPath);
    out.write("sku,name,serial,gtin,lot,attributes\n");
    for (let i = 0; i < N; i += 10_000) {
      let s = "";
      for (let j = i; j < Math.min(N, i + 10_000); j++) s += csvRow(j);
      if (!out.write(s)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
    await new Promise<void>((r) => out.end(r));
    const csvBytes = fs.statSync(csvPath).size;

    // 1. The limit: raw COPY of the same rows (ids, salts, leaves precomputed) into the same table,
    //    in one transaction, then removed so the registration starts from the same empty table.
    const rawBatch = (await db.query("INSERT INTO batches (tenant_id, status, total) VALUES ($1, 'processing', $2) RETURNING id", [tenant.id, N])).rows[0].id;
    const copyPath = path.join(tmp, "rows.copy");
    const cw = fs.createWriteStream(copyPath);
    for (let i = 0; i < N; i += 10_000) {
      let s = "";
      for (let j = i; j < Math.min(N, i + 10_000); j++) {
        const id = crypto.randomUUID();
        const salt = crypto.randomBytes(16).toString("hex");
        const gtin = j % 3 === 2 ? null : GTIN;
        const p = { sku: `W-${j % 10}`, name: `Watch, model ${j % 10}`, serial: `SN${j}`, gtin, lot: `L${j % 7}` };
        const leaf = productLeafHash({ tag_id: id, tenant_id: tenant.id, batch_id: rawBatch, ...p, salt }).toString("hex");
        s += `${id}\t${tenant.id}\t${rawBatch}\t${j}\t${p.sku}\t${p.name}\t${p.serial}\t${copyField(gtin)}\t${p.lot}\t{"i":${j}}\tk1\t${salt}\t${leaf}\n`;
      }
      if (!cw.write(s)) await new Promise<void>((r) => cw.once("drain", () => r()));
    }
    await new Promise<void>((r) => cw.end(r));
    await db.query("CHECKPOINT");
    const t0 = process.hrtime.bigint();
    await db.query("BEGIN");
    const src = fs.createReadStream(copyPath, { highWaterMark: 1 << 16 });
    let rawSentSeconds = 0;
    src.on("end", () => (rawSentSeconds = Number(process.hrtime.bigint() - t0) / 1e9));
    await pipeline(src, db.query(copyFrom("COPY products (id, tenant_id, batch_id, ordinal, sku, name, serial, gtin, lot, attributes, token_kid, salt, leaf_hash) FROM STDIN")));
    await db.query("COMMIT");
    const rawSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await db.query("TRUNCATE products CASCADE");
    await db.query("DELETE FROM batches WHERE id = $1", [rawBatch]);
    await db.query("VACUUM ANALYZE products");
    await db.query("CHECKPOINT");

    // 2. VokeTag: POST the CSV (streamed from the file), then poll until registered.
    const t1 = process.hrtime.bigint();
    const res = await fetch(`${base}/v1/batches?name=bench`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "text/csv" },
      body: Readable.toWeb(fs.createReadStream(csvPath, { highWaterMark: 1 << 16 })) as any,
      duplex: "half",
    } as any);
    const accepted = await json(res);
    const acceptSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    if (res.status !== 202) throw new Error(`POST /v1/batches: ${res.status} ${JSON.stringify(accepted)}`);
    let status = "received";
    let last: any;
    const trace: unknown[] = [];
    while (status === "received" || status === "processing") {
      await new Promise((r) => setTimeout(r, 250));
      last = await json(await fetch(`${base}/v1/batches/${accepted.id}`, { headers: { "x-api-key": key } }));
      status = last.status;
      if (process.env.BENCH_TRACE) trace.push([round(Number(process.hrtime.bigint() - t1) / 1e9), last.phase, last.progress?.done, currentRssMb(node.proc.pid!)]);
    }
    if (process.env.BENCH_TRACE) console.error(JSON.stringify(trace));
    const regSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    if (status !== "registered") throw new Error(`batch ended ${status}: ${JSON.stringify(last.errors)}`);
    const count = Number((await db.query("SELECT count(*) AS n FROM products WHERE batch_id = $1", [accepted.id])).rows[0].n);
    if (count !== N) throw new Error(`registered ${count} products, expected ${N}`);
    const nodeRss = peakRssMb(node.proc.pid!);

    const rawRate = N / rawSeconds;
    const regRate = N / regSeconds;
    const result = {
      bench: "registration",
      products: N,
      csv_mb: round(csvBytes / 1024 ** 2),
      postgres: (await db.query("SHOW server_version")).rows[0].server_version,
      cpus: os.availableParallelism(),
      voketag: {
        request_to_registered_s: round(regSeconds, 2),
        request_accepted_s: round(acceptSeconds, 2),
        products_per_s: Math.round(regRate),
        node_peak_rss_mb: nodeRss,
        // From the node's log: seconds since the COPY began when the last row was sent, when COPY
        // ended (Postgres runs the foreign-key checks after the last row), tree built, committed.
        phases: node.timings[0] ?? null,
      },
      raw_copy: { seconds: round(rawSeconds, 2), rows_sent_s: round(rawSentSeconds, 2), rows_per_s: Math.round(rawRate) },
      ratio_to_raw_copy: round(regRate / rawRate, 3),
      targets: {
        half_of_raw_copy: regRate >= rawRate / 2,
        at_least_10000_per_s: regRate >= 10_000,
        rss_under_1gb: nodeRss < 1024,
      },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await node?.stop();
    await db.end().catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
