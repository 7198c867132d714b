// A chaos scenario's own servers, on ports of their own, so that stopping one never touches the
// machine's shared Postgres (5432), Redis (6379) or NATS (4222): a Postgres cluster made with
// pg_createcluster (initdb refuses root; pg_createcluster runs the server as postgres), and Redis and
// NATS as child processes this process can kill. Everything started here is registered for cleanup,
// which also runs when the process is interrupted.
import { spawn, execFile, execFileSync, ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { promisify } from "node:util";
import { Client } from "pg";
import { freePort } from "../test/support/node-process";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- cleanup registry ----------------------------------------------------------------------

type Cleanup = { name: string; async: () => Promise<void>; sync: () => void };
const cleanups = new Map<number, Cleanup>();
let nextCleanup = 1;
let hooked = false;

function register(c: Cleanup): number {
  if (!hooked) {
    hooked = true;
    // Last resort when the runner dies: synchronous kills and drops only.
    process.once("exit", () => {
      for (const c of cleanups.values()) {
        try {
          c.sync();
        } catch {
          /* best effort */
        }
      }
    });
  }
  const id = nextCleanup++;
  cleanups.set(id, c);
  return id;
}

/** Stops everything this process started through this module (in reverse order). */
export async function cleanupAll(): Promise<void> {
  for (const [id, c] of [...cleanups.entries()].reverse()) {
    const t0 = Date.now();
    await c.async().catch(() => undefined);
    cleanups.delete(id);
    if (Date.now() - t0 > 5000) console.warn(`  (cleanup of ${c.name} took ${Math.round((Date.now() - t0) / 1000)} s)`);
  }
}

// ---- Postgres --------------------------------------------------------------------------------

function pgVersion(): string {
  const versions = fs.readdirSync("/usr/lib/postgresql").filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error("no PostgreSQL server under /usr/lib/postgresql");
  return versions[0];
}

export interface OwnPostgres {
  name: string;
  port: number;
  /** Superuser URL of the `postgres` database (trust auth on loopback). */
  url: string;
  running: boolean;
  /** mode "immediate" is a crash (no checkpoint, connections cut); "fast" a clean shutdown. */
  stop(mode?: "immediate" | "fast"): Promise<void>;
  start(): Promise<void>;
  drop(): Promise<void>;
}

export async function startPostgres(label = "chaos"): Promise<OwnPostgres> {
  const version = pgVersion();
  const name = `${label}_${crypto.randomBytes(3).toString("hex")}`.replace(/[^a-z0-9_]/g, "_");
  const port = await freePort();
  const ctl = (...args: string[]) => run("pg_ctlcluster", [version, name, ...args]);
  // Small and quick to restart; fsync stays on, since the point is to see what survives a crash.
  await run("pg_createcluster", [
    version,
    name,
    "-p",
    String(port),
    "-o",
    "max_connections=300",
    "--",
    "--auth=trust",
  ]);
  const pg: OwnPostgres = {
    name,
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    running: false,
    async stop(mode = "immediate") {
      await ctl("stop", "-m", mode);
      pg.running = false;
    },
    async start() {
      await ctl("start");
      await waitForPostgres(pg.url, 30_000);
      pg.running = true;
    },
    async drop() {
      cleanups.delete(cleanupId);
      await run("pg_dropcluster", [version, name, "--stop"]).catch(() => undefined);
      pg.running = false;
    },
  };
  const cleanupId = register({
    name: `postgres ${name}`,
    async: () => pg.drop(),
    sync: () => execFileSync("pg_dropcluster", [version, name, "--stop"], { stdio: "ignore" }),
  });
  await pg.start();
  return pg;
}

async function waitForPostgres(url: string, timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = new Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await c.connect();
      await c.query("SELECT 1");
      await c.end();
      return;
    } catch (err) {
      await c.end().catch(() => undefined);
      if (Date.now() > end) throw new Error(`postgres at ${url} did not come up: ${(err as Error).message}`);
      await sleep(200);
    }
  }
}

// ---- child-process servers (Redis, NATS) -------------------------------------------------------

export interface OwnServer {
  port: number;
  url: string;
  running: boolean;
  pid(): number | undefined;
  stop(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

function childServer(opts: { name: string; port: number; url: string; cmd: string; args: string[]; ready: RegExp; onClose?: () => void }): OwnServer {
  let proc: ChildProcess | null = null;
  const s: OwnServer = {
    port: opts.port,
    url: opts.url,
    running: false,
    pid: () => proc?.pid,
    async start() {
      if (proc) return;
      const p = spawn(opts.cmd, opts.args, { stdio: ["ignore", "pipe", "pipe"] });
      proc = p;
      const logs: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${opts.name} did not start:\n${logs.join("")}`)), 15_000);
        const onData = (b: Buffer) => {
          logs.push(b.toString());
          if (opts.ready.test(logs.join(""))) {
            clearTimeout(timer);
            resolve();
          }
        };
        p.stdout!.on("data", onData);
        p.stderr!.on("data", onData);
        p.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`${opts.name} exited with ${code}:\n${logs.join("")}`));
        });
      });
      // Keep draining its output so a chatty server never blocks on a full pipe.
      p.stdout!.resume();
      p.stderr!.resume();
      s.running = true;
    },
    async stop(signal = "SIGTERM") {
      const p = proc;
      if (!p) return;
      proc = null;
      s.running = false;
      if (p.exitCode !== null || p.signalCode) return;
      const exited = new Promise<void>((r) => p.once("exit", () => r()));
      p.kill(signal);
      const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
    async close() {
      cleanups.delete(cleanupId);
      await s.stop("SIGKILL");
      opts.onClose?.();
    },
  };
  const cleanupId = register({
    name: opts.name,
    async: () => s.close(),
    sync: () => {
      const pid = s.pid();
      if (pid) process.kill(pid, "SIGKILL");
      opts.onClose?.();
    },
  });
  return s;
}

/** redis-server on its own port, in memory only (no RDB, no AOF). */
export async function startRedis(): Promise<OwnServer> {
  const port = await freePort();
  const s = childServer({
    name: `redis :${port}`,
    port,
    url: `redis://127.0.0.1:${port}`,
    cmd: "redis-server",
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
    ready: /Ready to accept connections/,
  });
  await s.start();
  return s;
}

/** nats-server with JetStream on its own port, its store in a temporary directory. */
export async function startNats(): Promise<OwnServer> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-chaos-nats-"));
  const bin = fs.existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";
  const s = childServer({
    name: `nats :${port}`,
    port,
    url: `nats://127.0.0.1:${port}`,
    cmd: bin,
    args: ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
    ready: /Server is ready/,
    onClose: () => fs.rmSync(dir, { recursive: true, force: true }),
  });
  await s.start();
  return s;
}

/** A temporary directory removed at cleanup. */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `voketag-chaos-${label}-`));
  register({ name: `dir ${dir}`, async: async () => fs.rmSync(dir, { recursive: true, force: true }), sync: () => fs.rmSync(dir, { recursive: true, force: true }) });
  return dir;
}

/** Registers an arbitrary cleanup (e.g. a cluster harness; `sync` runs if the process dies first). */
export function onCleanup(name: string, fn: () => Promise<void>, sync: () => void = () => undefined): () => void {
  const id = register({ name, async: fn, sync });
  return () => void cleanups.delete(id);
}
