// The Dockerfile without a Docker engine. First it is parsed: Node 22 base, multi-stage, a numeric
// non-root USER, a HEALTHCHECK, no secret baked into ENV/ARG, everything the shipped code loads
// actually copied, and the same user, ports and data dir as k8s/. Then its production build is
// reproduced: the files its COPY lines name are copied to a temp dir, node_modules holds exactly the
// lockfile's production packages (hard links into this checkout's install — `npm ci` itself would
// fetch the same ~300 MB again; the lockfile is checked with `npm ci --omit=dev --dry-run`), and a
// node runs as uid 1000 in a private mount namespace where the whole root filesystem is read-only
// but for a tmp dir and the data dir, as under Kubernetes' readOnlyRootFilesystem. It must start
// in production mode, read its admin password from a secret file, answer /v1/health, /v1/ready and
// the image's own HEALTHCHECK command, and exit cleanly on SIGTERM.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseDockerfile, envOf, Stage } from "../support/dockerfile";
import { build } from "../support/kustomize";
import { freePort } from "../support/node-process";
import { REQUIRE } from "../support/services";
import { until } from "../support/http";

const ROOT = path.resolve(__dirname, "..", "..");
const df = parseDockerfile(path.join(ROOT, "Dockerfile"));
const final = df.stages[df.stages.length - 1];
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const UID = 1000;

describe("Dockerfile, parsed", () => {
  it("is multi-stage on node:22-bookworm-slim, production dependencies from the lockfile", () => {
    expect(df.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of df.stages) expect(s.image).toBe("node:22-bookworm-slim");
    const deps = df.stages.find((s) => ops(s, "RUN").some((r) => /npm ci\b.*--omit=dev/.test(r.args)));
    expect(deps?.name).toBeTruthy();
    expect(ops(deps!, "COPY").map((c) => c.args)).toContain("package.json package-lock.json ./");
    // The runtime takes node_modules from that stage, never from the build context.
    expect(ops(final, "COPY").some((c) => c.flags.from === deps!.name && c.args.startsWith("/app/node_modules"))).toBe(true);
    expect(ops(final, "RUN").some((r) => /npm (ci|install)/.test(r.args))).toBe(false);
  });

  it("runs as a numeric non-root user, set after the last root step", () => {
    const users = ops(final, "USER");
    expect(users.length).toBeGreaterThanOrEqual(1);
    const last = users[users.length - 1];
    const [uid, gid] = last.args.split(":").map(Number);
    expect(uid).toBe(UID);
    expect(gid).toBe(UID);
    const idx = final.instructions.indexOf(last);
    expect(final.instructions.slice(idx).some((i) => i.op === "RUN")).toBe(false);
  });

  it("has a HEALTHCHECK in exec form and an exec-form CMD starting bin/node.ts", () => {
    const hc = ops(final, "HEALTHCHECK");
    expect(hc).toHaveLength(1);
    expect(hc[0].exec?.[0]).toBe("node");
    expect(hc[0].flags).toMatchObject({ interval: expect.any(String), timeout: expect.any(String) });
    const cmd = ops(final, "CMD");
    expect(cmd[cmd.length - 1].exec).toEqual(["node", "--import", "tsx", "bin/node.ts"]);
    expect(ops(final, "STOPSIGNAL")[0]?.args).toBe("SIGTERM");
  });

  it("bakes in no secret: no ENV/ARG that names a key, secret, password or token with a value", () => {
    const risky = /KEY|SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE|CREDENTIAL/i;
    for (const s of df.stages) {
      for (const [k, v] of Object.entries(envOf(s))) {
        expect([k, risky.test(k) && v !== ""]).toEqual([k, false]);
        expect([k, /:\/\/[^/@\s]*:[^/@\s]+@/.test(v)]).toEqual([k, false]); // no URL with a password
      }
      for (const a of ops(s, "ARG")) expect([a.args, risky.test(a.args)]).toEqual([a.args, false]);
      for (const c of ops(s, "COPY")) expect(c.args).not.toMatch(/\.env|\.pem|\.key|secrets/);
    }
    for (const [k] of Object.entries(df.globalArgs)) expect(risky.test(k)).toBe(false);
    // And the build context leaves them out even if a COPY . . were added one day.
    const ignore = fs.readFileSync(path.join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const p of ["node_modules", ".git", ".env", ".env.*", "*.pem", "*.key", "data"]) expect(ignore).toContain(p);
  });

  it("copies everything the shipped code loads", () => {
    const shipped = ops(final, "COPY").filter((c) => !c.flags.from).flatMap((c) => c.args.split(/\s+/).slice(0, -1));
    const isShipped = (abs: string) => shipped.some((s) => abs === path.join(ROOT, s) || abs.startsWith(path.join(ROOT, s) + path.sep));
    const tsFiles = shipped.flatMap((s) => {
      const p = path.join(ROOT, s);
      if (!fs.statSync(p).isDirectory()) return p.endsWith(".ts") ? [p] : [];
      return fs.readdirSync(p, { recursive: true }).map(String).filter((f) => f.endsWith(".ts")).map((f) => path.join(p, f));
    });
    expect(tsFiles.length).toBeGreaterThan(30);
    for (const f of tsFiles) {
      const src = fs.readFileSync(f, "utf8");
      for (const m of src.matchAll(/(?:from|import|require\()\s*"(\.{1,2}\/[^"]+)"/g)) {
        const target = path.resolve(path.dirname(f), m[1]);
        const found = [target, target + ".ts", path.join(target, "index.ts"), target + ".json"].find((t) => fs.existsSync(t));
        expect([path.relative(ROOT, f), m[1], !!found && isShipped(found)]).toEqual([path.relative(ROOT, f), m[1], true]);
      }
      for (const m of src.matchAll(/path\.join\(__dirname, "\.\.", "([^"]+)"\)/g)) {
        const dir = path.resolve(path.dirname(f), "..", m[1]);
        expect([path.relative(ROOT, f), m[1], isShipped(dir)]).toEqual([path.relative(ROOT, f), m[1], true]);
      }
    }
  });

  it("agrees with k8s/ on the user, the data dir and the ports", () => {
    const env = envOf(final);
    expect(env.NODE_ENV).toBe("production");
    const objs = build(path.join(ROOT, "k8s", "overlays", "prod"));
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === "voketag-config")!.data;
    expect(env.VOKETAG_DATA_DIR).toBe(cm.VOKETAG_DATA_DIR);
    expect(env.TMPDIR).toBe(cm.TMPDIR);
    expect(env.HEALTH_PORT).toBe(cm.HEALTH_PORT);
    expect(env.METRICS_PORT).toBe(cm.METRICS_PORT);
    const gw = objs.find((o) => o.kind === "Deployment" && o.metadata.name === "voketag-gateway")!;
    expect(gw.spec.template.spec.securityContext.runAsUser).toBe(UID);
    const exposed = ops(final, "EXPOSE").flatMap((e) => e.args.split(/\s+/).map(Number));
    for (const p of gw.spec.template.spec.containers[0].ports) expect(exposed).toContain(p.containerPort);
  });
});

describe("Dockerfile, its production build reproduced", () => {
  let usable = false;
  let work: string;
  let proc: ChildProcess | null = null;
  const logs: string[] = [];
  let port: number;
  let healthPort: number;
  let adminPassword: string;

  beforeAll(async () => {
    const why: string[] = [];
    if (process.getuid?.() !== 0) why.push("needs root (mount namespace, setpriv)");
    for (const tool of ["unshare", "setpriv", "mount"]) if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) why.push(`${tool} missing`);
    if (why.length) {
      const msg = `dockerfile: cannot reproduce the image here: ${why.join(", ")}`;
      if (REQUIRE) throw new Error(`${msg} — VOKETAG_REQUIRE_SERVICES=1, so this is a failure`);
      console.warn(`\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!! SKIPPED ${msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`);
      return;
    }
    usable = true;
    work = fs.mkdtempSync(path.join(os.tmpdir(), "vk-image-"));
    fs.chmodSync(work, 0o755);
    const app = path.join(work, "app");
    fs.mkdirSync(app);
    // The runtime stage's COPY lines from the build context, in order.
    for (const c of ops(final, "COPY").filter((x) => !x.flags.from)) {
      const parts = c.args.split(/\s+/);
      const dest = parts.pop()!;
      for (const src of parts) {
        const to = dest.endsWith("/") && dest !== "./" ? path.join(app, dest, path.basename(src)) : dest === "./" ? path.join(app, path.basename(src)) : path.join(app, dest);
        fs.cpSync(path.join(ROOT, src), to, { recursive: true });
      }
    }
    // COPY --from=deps /app/node_modules: the lockfile's production packages, hard-linked.
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
    const prod = Object.entries<any>(lock.packages)
      .filter(([k, v]) => k.startsWith("node_modules/") && !v.dev && !/node_modules\/.+\/node_modules\//.test(k))
      .map(([k]) => k)
      .filter((k) => fs.existsSync(path.join(ROOT, k))); // other platforms' optional packages are absent
    expect(prod.length).toBeGreaterThan(100);
    fs.mkdirSync(path.join(app, "node_modules", "@x"), { recursive: true });
    for (const k of prod) {
      fs.mkdirSync(path.dirname(path.join(app, k)), { recursive: true });
      const r = spawnSync("cp", ["-al", path.join(ROOT, k), path.join(app, k)]);
      if (r.status !== 0) fs.cpSync(path.join(ROOT, k), path.join(app, k), { recursive: true }); // another filesystem
    }
    for (const d of ["tmp", "data", "secrets"]) fs.mkdirSync(path.join(work, d));
    for (const d of ["tmp", "data"]) fs.chownSync(path.join(work, d), UID, UID);
    // A Kubernetes Secret volume: root-owned files, mode 0440, group 1000 (fsGroup).
    adminPassword = "image test " + Math.random().toString(36).slice(2);
    const pw = path.join(work, "secrets", "admin-password");
    fs.writeFileSync(pw, adminPassword + "\n");
    fs.chownSync(pw, 0, UID);
    fs.chmodSync(pw, 0o440);
  }, 120_000);

  afterAll(async () => {
    if (proc && proc.exitCode === null && !proc.signalCode) {
      proc.kill("SIGKILL");
      await new Promise((r) => proc!.once("exit", r));
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("the lockfile installs with the Dockerfile's `npm ci --omit=dev` (checked with --dry-run)", () => {
    if (!usable) return;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-npmci-"));
    try {
      for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
      const r = spawnSync("npm", ["ci", "--omit=dev", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
        timeout: 120_000,
      });
      const errors = (r.stderr || "").split("\n").filter((l) => l.startsWith("npm error")).slice(0, 8).join("\n");
      expect([r.status, errors]).toEqual([0, ""]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("starts as uid 1000 on a read-only root filesystem and answers health, readiness and its HEALTHCHECK", async () => {
    if (!usable) return;
    port = await freePort();
    healthPort = await freePort();
    const metricsPort = await freePort();
    const app = path.join(work, "app");
    const env: Record<string, string> = {
      ...envOf(final),
      PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: path.join(work, "tmp"),
      PORT: String(port),
      HEALTH_PORT: String(healthPort),
      METRICS_PORT: String(metricsPort),
      TMPDIR: path.join(work, "tmp"),
      VOKETAG_DATA_DIR: path.join(work, "data"),
      VOKETAG_ADMIN_EMAIL: "admin@image.test",
      VOKETAG_ADMIN_PASSWORD_FILE: path.join(work, "secrets", "admin-password"),
      VERIFICATION_URL_BASE: `http://127.0.0.1:${port}`,
      LOG_LEVEL: "info",
    };
    expect(env.NODE_ENV).toBe("production");
    // tmp and data become mounts of their own (writable); then / is remounted read-only for this
    // namespace only: the app, node_modules and everything else can no longer be written.
    const script = [
      "set -e",
      `mount --bind "${work}/tmp" "${work}/tmp"`,
      `mount --bind "${work}/data" "${work}/data"`,
      "mount -o remount,bind,ro /",
      `cd "${app}"`,
      `exec setpriv --reuid=${UID} --regid=${UID} --clear-groups --inh-caps=-all --bounding-set=-all "${process.execPath}" --import tsx bin/node.ts`,
    ].join("\n");
    const started = Date.now();
    proc = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], { env, stdio: ["ignore", "pipe", "pipe"] });
    for (const s of [proc.stdout!, proc.stderr!]) s.on("data", (b: Buffer) => logs.push(...b.toString().split("\n").filter(Boolean)));
    const exited = new Promise<number | null>((r) => proc!.once("exit", (code) => r(code)));
    const base = `http://127.0.0.1:${port}`;
    await Promise.race([
      until(() => fetch(base + "/v1/health").then((r) => r.status, () => 0), (s) => s === 200, 90_000, 250),
      exited.then((code) => {
        throw new Error(`the node exited (${code}) before answering:\n${logs.slice(-40).join("\n")}`);
      }),
    ]);
    const startMs = Date.now() - started;

    // Who runs it, and on what filesystem.
    const status = fs.readFileSync(`/proc/${proc.pid}/status`, "utf8");
    expect(/^Uid:\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1, 3)).toEqual([String(UID), String(UID)]);
    expect(/^CapEff:\s+(\S+)/m.exec(status)![1]).toBe("0000000000000000");
    const mounts = fs.readFileSync(`/proc/${proc.pid}/mountinfo`, "utf8").split("\n").map((l) => l.split(" "));
    const rootMount = mounts.find((m) => m[4] === "/")!;
    expect(rootMount[5].split(",")).toContain("ro");

    const ready = await until(() => fetch(base + "/v1/ready").then(async (r) => ({ status: r.status, body: await r.json() as any })), (r) => r.status === 200, 60_000, 500);
    expect(ready.body.checks).toMatchObject({ pglite: { ok: true }, chain: { ok: true } });
    // The admin password came from the secret file (production refuses it as a variable).
    const login = await fetch(base + "/v1/auth/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: "admin@image.test", password: adminPassword }) });
    expect(login.status).toBe(200);
    // The console's static files are in the image.
    expect((await fetch(base + "/admin")).status).toBe(200);
    // It wrote its database and chain under the data dir, and nothing in the app dir changed.
    expect(fs.readdirSync(path.join(work, "data")).length).toBeGreaterThan(0);

    // The probe listener, once bin/node.ts starts it on HEALTH_PORT (k8s probes use it).
    const listener = logs.some((l) => l.includes("health listener up"));
    if (listener) {
      expect((await fetch(`http://127.0.0.1:${healthPort}/v1/health`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${healthPort}/v1/ready`)).status).toBe(200);
    } else console.warn(`dockerfile: bin/node.ts does not start the probe listener on HEALTH_PORT yet; k8s probes need it`);

    // The image's own HEALTHCHECK command, as Docker would run it inside the container.
    const hc = ops(final, "HEALTHCHECK")[0].exec!;
    const run = (e: Record<string, string>) => spawnSync(process.execPath, hc.slice(1), { env: { PATH: env.PATH, ...e }, timeout: 10_000 }).status;
    expect(run({ PORT: String(port), HEALTH_PORT: listener ? String(healthPort) : "" })).toBe(0);
    expect(run({ PORT: String(await freePort()) })).toBe(1); // nothing listening: unhealthy

    // SIGTERM: a clean exit well inside the grace period.
    const t0 = Date.now();
    proc.kill("SIGTERM");
    const code = await exited;
    const stopMs = Date.now() - t0;
    expect(code).toBe(0);
    expect(stopMs).toBeLessThan(10_000);
    expect(logs.join("\n")).not.toMatch(/EROFS|EACCES/);
    console.log(`dockerfile: production build up in ${startMs} ms (health), stopped in ${stopMs} ms`);
  }, 180_000);
});
