// `npm run repl` driven in tmux, the way an operator types: it joins a running cluster over NATS
// (TRANSPORTER + VOKETAG_NAMESPACE), and its commands list tenants, show the system, anchor now,
// retry an id and verify the ledger; what it changes is audited under its own name.
import { execFileSync } from "node:child_process";
import path from "node:path";
import crypto from "node:crypto";
import { startAdminCluster, AdminCluster, eventually } from "../support/admin-cluster";
import { until } from "../support/http";

const ROOT = path.resolve(__dirname, "..", "..");
const SOCKET = `vt-repl-${process.pid}`;
const SESSION = "repl";

let c: AdminCluster | null = null;
let tenant: string;
let batchId: string;

const tmux = (...args: string[]) => execFileSync("tmux", ["-L", SOCKET, ...args], { encoding: "utf8" });
const screen = () => tmux("capture-pane", "-p", "-J", "-t", SESSION, "-S", "-3000");
let mark = 0;

/** Types a command and waits for the output it should produce (after the previous command's). */
async function run(command: string, expect: RegExp, timeoutMs = 30_000): Promise<string> {
  const before = screen().length;
  mark = before;
  tmux("send-keys", "-t", SESSION, "-l", command);
  tmux("send-keys", "-t", SESSION, "Enter");
  return eventually(() => {
    const text = screen().slice(Math.max(0, mark - 200));
    return expect.test(text) ? text : null;
  }, timeoutMs, 200).catch((err) => {
    throw new Error(`${err.message}: waiting for ${expect} after "${command}"; screen:\n${screen().slice(-3000)}`);
  });
}

function haveTmux(): boolean {
  try {
    execFileSync("tmux", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  if (!haveTmux()) {
    if (process.env.VOKETAG_REQUIRE_SERVICES === "1") throw new Error("repl: tmux is not installed");
    console.warn("!! SKIPPED repl: tmux is not installed");
    return;
  }
  c = await startAdminCluster("repl");
  if (!c) return;
  tenant = await c.tenant("Repl Watches");
  const key = await c.key(tenant);
  const b = await c.api.post("/v1/batches", { products: [{ sku: "R", name: "R", serial: `R-${crypto.randomUUID()}` }] }, key);
  batchId = b.body.id;
  await until(() => c!.api.get(`/v1/batches/${batchId}`, key), (r) => r.body.status === "registered", 30_000);
  const env = `TRANSPORTER=${c.env.TRANSPORTER} VOKETAG_NAMESPACE=${c.env.VOKETAG_NAMESPACE} NODE_ENV=development`;
  tmux("new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", "-c", ROOT, `env ${env} npm run repl; sleep 30`);
});

afterAll(async () => {
  try {
    if (c) tmux("kill-server");
  } catch {
    /* already gone */
  }
  await c?.close();
});

const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);

it("joins the cluster and shows its prompt", async (c) => {
  const text = await eventually(() => (/voketag \$/.test(screen()) ? screen() : null), 60_000, 250).catch(() => {
    throw new Error(`no prompt; screen:\n${screen()}`);
  });
  expect(text).toContain(`namespace "${c.env.VOKETAG_NAMESPACE}"`);
  expect(text).toMatch(/joined nats:\/\//);
}, 70_000);

it("lists tenants", async () => {
  const text = await run("tenants", /1 tenant\(s\)/);
  expect(text).toContain("Repl Watches");
  expect(text).toContain(tenant);
});

it("shows the system status: nodes, breakers, outbox, anchor queue", async () => {
  const text = await run("status", /webhooks: /);
  expect(text).toMatch(/repl-node\s*│\s*yes\s*│\s*admin,anchor,api,factory/);
  expect(text).toMatch(/repl-[^\s│]+\s*│\s*yes/);
  expect(text).toContain("circuit breakers open: none");
  expect(text).toMatch(/outbox: \d+ unsent, lag \d+ s/);
  expect(text).toMatch(/anchor: \d+ batch\(es\) waiting .*periods pending \d+, submitted \d+, confirmed \d+, final \d+, failed \d+; interval 3600 s/);
});

it("anchors now, and the batch goes on chain", async (c) => {
  await run("anchor-now", /anchor cycle: \{.*\}/);
  await eventually(async () => {
    const r = await c.pg.query(
      "SELECT p.status FROM period_leaves l JOIN periods p ON p.id = l.period_id WHERE l.kind = 'batch' AND l.ref = $1",
      [batchId],
    );
    return r.rows.some((x: any) => ["submitted", "confirmed", "final"].includes(x.status));
  }, 30_000, 250);
  const audit = await c.api.get("/v1/admin/audit?action=god.anchor_cycle", c.admin);
  expect(audit.body.items[0].actor_id).toMatch(/^repl:/);
});

it("retries an id: a delayed outbox event is delivered now", async (c) => {
  const id = Number((await c.pg.query(
    `INSERT INTO outbox (topic, payload, pending, attempts, next_at) VALUES ('batch.registered', $1::jsonb, '{webhooks.onEvent}', 4, now() + interval '1 day') RETURNING id`,
    [JSON.stringify({ tenant_id: tenant, batch_id: crypto.randomUUID(), products: 1, root: "ab" })],
  )).rows[0].id);
  await run(`retry ${id}`, new RegExp(`retried outbox ${id}`));
  await eventually(async () => (await c.pg.query("SELECT sent_at FROM outbox WHERE id = $1", [id])).rows[0].sent_at, 15_000, 200);
  // A bad id is an error line, and the REPL keeps going.
  await run("retry not-an-id", /error: give a batch/);
});

it("verifies the scan ledger and the audit trail", async (c) => {
  await c.api.post("/v1/scan", { token: "garbage-token" });
  const text = await run("verify-ledger", /ledger verified|LEDGER BROKEN/, 60_000);
  expect(text).toContain("ledger verified: every chain holds");
  expect(text).toMatch(/audit trail\s*│\s*ok/);
});
