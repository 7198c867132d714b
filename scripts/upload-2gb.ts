// The 2 GB resumable-upload run (issue 3; outside CI): writes a ~2 GB product CSV, uploads it to
// /v1/uploads in 64 MiB chunks, cuts the connection once half-way and resumes from the offset GET
// reports, lets the completed file become a batch and waits for it to be registered. Prints JSON.
//
//   npx tsx scripts/upload-2gb.ts                       # starts its own node on the local Postgres
//   npx tsx scripts/upload-2gb.ts --base URL --key KEY  # against a running VokeTag
// Options: --bytes N (default 2,000,000,000), --database-url postgres://… (own node only).
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import http from "node:http";
import { spawn, ChildProcess } from "node:child_process";
import { Client } from "pg";
import { freePort } from "../test/support/node-process";

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1];
}
const TARGET = Number(arg("--bytes", "2000000000"));
const CHUNK = 64 * 1024 * 1024;
const ROOT = path.resolve(__dirname, "..");
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const since = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;

async function json(res: Response) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Rows of about 1,000 bytes (a product description in the attributes), serials unique. */
async function writeFile(file: string): Promise<{ bytes: number; rows: number; sha256: string }> {
  const hash = crypto.createHash("sha256");
  const out = fs.createWriteStream(file);
  const put = async (s: string) => {
    hash.update(s);
    if (!out.write(s)) await new Promise<void>((r) => out.once("drain", () => r()));
  };
  const header = "sku,name,serial,gtin,lot,attributes\n";
  await put(header);
  let bytes = Buffer.byteLength(header);
  let rows = 0;
  const text = "Stainless steel case, sapphire crystal, automatic movement. ".repeat(20);
  while (bytes < TARGET) {
    // ASCII only: string length is byte length.
    let s = "";
    for (let j = 0; j < 1000 && bytes + s.length < TARGET; j++, rows++) {
      const desc = text.slice(0, 940 - String(rows).length);
      s += `W-${rows % 100},"Diver ${rows % 100}",S${rows},09506000134352,L${rows % 97},"{""description"":""${desc}"",""n"":${rows}}"\n`;
    }
    bytes += s.length;
    await put(s);
  }
  await new Promise<void>((r) => out.end(() => r()));
  return { bytes, rows, sha256: hash.digest("hex") };
}

/** PUT one chunk from the file, streamed; `cutAfter` drops the connection after that many bytes. */
function putChunk(base: string, key: string, id: string, file: string, offset: number, length: number, cutAfter?: number): Promise<{ status: number; body: any }> {
  return new Promise((resolve) => {
    const req = http.request(`${base}/v1/uploads/${id}?offset=${offset}`, {
      method: "PUT",
      headers: { "x-api-key": key, "content-type": "application/octet-stream", "content-length": String(length) },
    });
    req.on("error", () => resolve({ status: 0, body: null }));
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString();
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
      });
    });
    const src = fs.createReadStream(file, { start: offset, end: offset + (cutAfter ?? length) - 1, highWaterMark: 1 << 20 });
    src.pipe(req, { end: cutAfter === undefined });
    if (cutAfter !== undefined) src.on("end", () => setTimeout(() => req.destroy(), 500));
  });
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vk-2gb-"));
  let node: ChildProcess | null = null;
  let admin: Client | null = null;
  let dbName: string | null = null;
  let base = arg("--base");
  let key = arg("--key");
  try {
    if (!base || !key) {
      const pg = arg("--database-url", process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test")!;
      dbName = `vk_2gb_${crypto.randomBytes(4).toString("hex")}`;
      admin = new Client({ connectionString: pg });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${dbName}`);
      const u = new URL(pg);
      u.pathname = `/${dbName}`;
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      node = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "node.ts")], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: u.toString(), PORT: String(port), SERVICES: "api,factory,admin", VOKETAG_DATA_DIR: tmp, VOKETAG_NAMESPACE: dbName, VERIFICATION_URL_BASE: base, VOKETAG_ADMIN_EMAIL: "ops@voketag.test", VOKETAG_ADMIN_PASSWORD: "correct horse battery staple", RATE_LIMIT_KEY: "100000", LOG_LEVEL: "info" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      await new Promise<void>((resolve, reject) => {
        node!.stdout!.on("data", (b: Buffer) => /HTTP listening/.test(b.toString()) && resolve());
        node!.once("exit", (c) => reject(new Error(`node exited with ${c}`)));
      });
      const login = await json(await fetch(`${base}/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: "ops@voketag.test", password: "correct horse battery staple" }) }));
      const h = { authorization: `Bearer ${login.access_token}`, "content-type": "application/json" };
      const t = await json(await fetch(`${base}/v1/admin/tenants`, { method: "POST", headers: h, body: JSON.stringify({ name: "Two gigabytes" }) }));
      key = (await json(await fetch(`${base}/v1/admin/tenants/${t.id}/api-keys`, { method: "POST", headers: h, body: JSON.stringify({ name: "2gb" }) }))).key;
    }
    const file = path.join(tmp, "products.csv");
    const t0 = process.hrtime.bigint();
    const f = await writeFile(file);
    const writeSeconds = since(t0);

    const created = await json(await fetch(`${base}/v1/uploads`, { method: "POST", headers: { "x-api-key": key!, "content-type": "application/json" }, body: JSON.stringify({ size: f.bytes, sha256: f.sha256, name: "2 GB run" }) }));
    if (!created.id) throw new Error(`POST /v1/uploads: ${JSON.stringify(created)}`);
    const t1 = process.hrtime.bigint();
    let offset = 0;
    let cut = false;
    let resumedFrom: number | null = null;
    let cutKept = 0;
    let final: any = null;
    while (offset < f.bytes) {
      const length = Math.min(CHUNK, f.bytes - offset);
      if (!cut && offset >= f.bytes / 2) {
        // The link drops 40 MiB into this chunk; GET says where to resume.
        cut = true;
        const dropped = await putChunk(base!, key!, created.id, file, offset, length, 40 * 1024 * 1024);
        if (process.env.DEBUG_2GB) console.error("cut PUT answered", dropped.status, JSON.stringify(dropped.body));
        let prev = -1;
        let now = offset;
        while (now !== prev) {
          await new Promise((r) => setTimeout(r, 1000));
          prev = now;
          now = (await json(await fetch(`${base}/v1/uploads/${created.id}`, { headers: { "x-api-key": key! } }))).received;
          if (process.env.DEBUG_2GB) console.error("after the cut, received", now);
        }
        cutKept = now - offset;
        resumedFrom = now;
        offset = now;
        continue;
      }
      const r = await putChunk(base!, key!, created.id, file, offset, length);
      if (r.status !== 200 && r.status !== 202) throw new Error(`PUT at ${offset}: ${r.status} ${JSON.stringify(r.body)}`);
      offset = r.body.received;
      final = r.body;
    }
    const uploadSeconds = since(t1);
    if (!final?.batch_id) throw new Error(`upload did not complete: ${JSON.stringify(final)}`);
    let b: any;
    const t2 = process.hrtime.bigint();
    for (;;) {
      b = await json(await fetch(`${base}/v1/batches/${final.batch_id}`, { headers: { "x-api-key": key! } }));
      if (!["received", "processing"].includes(b.status)) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    const registerSeconds = since(t2);
    const rssMb = node ? round(Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${node.pid}/status`, "utf8"))![1]) / 1024) : null;
    console.log(
      JSON.stringify(
        {
          run: "upload-2gb",
          file: { bytes: f.bytes, rows: f.rows, sha256: f.sha256, written_s: round(writeSeconds) },
          upload: { seconds: round(uploadSeconds), mb_per_s: round(f.bytes / 1e6 / uploadSeconds), cut: resumedFrom !== null, resumed_from: resumedFrom, kept_of_cut_chunk: cutKept, sent_of_cut_chunk: 40 * 1024 * 1024, chunk_mib: CHUNK / 1024 ** 2 },
          batch: { id: final.batch_id, status: b.status, products: b.progress?.done, errors: b.errors, register_s: round(registerSeconds), products_per_s: Math.round((b.progress?.done ?? 0) / registerSeconds) },
          node_peak_rss_mb: rssMb,
        },
        null,
        2,
      ),
    );
    if (b.status !== "registered" && b.status !== "anchoring" && b.status !== "anchored") process.exitCode = 1;
  } finally {
    node?.kill("SIGTERM");
    if (node) await new Promise((r) => node!.once("exit", r));
    if (admin && dbName) await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await admin?.end();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
