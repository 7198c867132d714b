// The voketag CLI against a live node: login (password and API key), a batch from a CSV with its
// progress, labels downloaded to a file; every command through the real bin.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { createClient } from "../../sdk";
import { ADMIN } from "../support/journey";

const run = promisify(execFile);
const BIN = path.resolve(__dirname, "..", "..", "bin", "voketag.js");

describe("voketag CLI", () => {
  let node: NodeHandle;
  let base: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [BIN, ...args], { env: { ...env, ...extra }, cwd: dir }).then(
      (r) => ({ code: 0, ...r }),
      (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
    );

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-cli-"));
    env = { ...process.env, VOKETAG_CONFIG: path.join(dir, "credentials.json") };
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: "memory://", VERIFICATION_URL_BASE: base, VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password, ANCHOR_INTERVAL: "3600" });
  });
  afterAll(async () => {
    await node?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("logs in with a password read from the environment and refuses a wrong one", async () => {
    const bad = await cli(["login", "--url", base, "--email", ADMIN.email], { VOKETAG_PASSWORD: "not the password" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("401");
    const ok = await cli(["login", "--url", base, "--email", ADMIN.email], { VOKETAG_PASSWORD: ADMIN.password });
    expect(ok.code).toBe(0);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, "credentials.json"), "utf8"));
    expect(saved.access_token).toBeTruthy();
    expect(fs.statSync(path.join(dir, "credentials.json")).mode & 0o077).toBe(0);
  });

  it("creates a batch from a CSV, shows its progress, and downloads its labels", async () => {
    const admin = createClient({ baseUrl: base });
    admin.setAccessToken((await admin.login(ADMIN.email, ADMIN.password)).access_token);
    const tenant = await admin.createTenant("CLI Tenant");
    const key = (await admin.createTenantKey(tenant.id, { name: "cli" })).key;
    expect((await cli(["login", "--url", base, "--api-key", key])).code).toBe(0);

    const csv = ["sku,name,serial,gtin,lot", ...Array.from({ length: 50 }, (_, i) => `CLI-1,CLI product,CLI-${i},09506000134352,L7`)].join("\n") + "\n";
    fs.writeFileSync(path.join(dir, "batch.csv"), csv);
    const created = await cli(["batch", "create", "batch.csv", "--name", "from the CLI", "--markets", "PT,BR"]);
    expect(created.code).toBe(0);
    expect(created.stderr).toMatch(/\[#+-*\] \d+% /);
    const batchId = created.stdout.trim().split(" ")[0];
    expect(created.stdout).toMatch(/registered|anchoring|anchored/);

    const labels = await cli(["labels", batchId, "--format", "csv", "-o", "labels.csv"]);
    expect(labels.code).toBe(0);
    const file = fs.readFileSync(path.join(dir, "labels.csv"), "utf8");
    expect(file).toContain("CLI-49");
    expect(file).toContain(`${base}/`);
    const pdf = await cli(["labels", batchId, "--format", "pdf", "-o", "labels.pdf"]);
    expect(pdf.code).toBe(0);
    expect(fs.readFileSync(path.join(dir, "labels.pdf")).subarray(0, 5).toString()).toBe("%PDF-");

    const broken = await cli(["batch", "create", "batch.csv"]); // the same serials again
    expect(broken.code).toBe(1);
  });

  it("answers usage errors with exit code 2", async () => {
    expect((await cli(["batch"])).code).toBe(2);
    expect((await cli(["nope"])).code).toBe(2);
  });
});
