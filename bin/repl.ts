// `npm run repl`: joins the running cluster (TRANSPORTER + VOKETAG_NAMESPACE) as an admin node with
// moleculer-repl, plus VokeTag's daily commands: tenants, status, failures, anchor-now, retry <id>,
// verify-ledger. It runs no service of its own; it calls the cluster's actions as the admin
// "repl:<user>@<host>", so everything it changes is in the audit trail under that name. Reaching the
// cluster's NATS is the credential: whoever can do that can call any action anyway.
// Without TRANSPORTER it starts a whole embedded node (like `npm start`) and attaches to it.
import os from "node:os";
import type { ServiceBroker } from "moleculer";
import { configOrExit } from "./config-or-exit";
import { brokerOptions } from "../moleculer.config";
import { createNode } from "../services";

const ACTOR = { type: "user", id: `repl:${os.userInfo().username}@${os.hostname()}`, role: "admin", tenant_id: null, scopes: ["*"] };

type Helpers = { table: (rows: unknown[][], opts?: any) => string; getBorderCharacters: (name: string) => any };

function out(text: string) {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

function grid(h: Helpers, rows: unknown[][]): string {
  return h.table(rows.map((r) => r.map((v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)))), {
    border: h.getBorderCharacters("norc"),
    drawHorizontalLine: (i: number, n: number) => i === 0 || i === 1 || i === n,
  });
}

/** Runs a command body, printing any failure as one line instead of a stack trace. */
function guarded(fn: (broker: ServiceBroker, args: any, h: Helpers) => Promise<void>) {
  return async (broker: ServiceBroker, args: any, h: Helpers) => {
    try {
      await fn(broker, args, h);
    } catch (err: any) {
      out(`error: ${err?.message ?? err}${err?.code ? ` (${err.code})` : ""}`);
    }
  };
}

const call = (broker: ServiceBroker, action: string, params: Record<string, unknown> = {}, timeout = 30_000) =>
  broker.call(action, params, { meta: { principal: ACTOR }, timeout }) as Promise<any>;

export const COMMANDS = [
  {
    command: "tenants",
    alias: ["lt"],
    description: "List tenants (id, name, status, created)",
    action: guarded(async (broker, _args, h) => {
      const rows: any[] = [];
      let cursor: string | undefined;
      do {
        const page = await call(broker, "admin.listTenants", { limit: 1000, ...(cursor ? { cursor } : {}) });
        rows.push(...page.items);
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
      out(grid(h, [["id", "name", "status", "created"], ...rows.map((t) => [t.id, t.name, t.status, new Date(t.created_at).toISOString()])]));
      out(`${rows.length} tenant(s)`);
    }),
  },
  {
    command: "status",
    description: "System status: nodes and services, open circuit breakers, outbox lag, anchor queue, webhooks",
    action: guarded(async (broker, _args, h) => {
      const s = await call(broker, "admin.godSystem");
      out(grid(h, [["node", "available", "services"], ...s.nodes.map((n: any) => [n.id, n.available ? "yes" : "NO", n.services.join(",")])]));
      const open = s.circuit_breakers.open;
      out(`circuit breakers open: ${open.length ? open.map((b: any) => `${b.node}->${b.target_node} ${b.action ?? b.service} (${b.state})`).join("; ") : "none"}`);
      out(`outbox: ${s.outbox.unsent} unsent, lag ${s.outbox.lag_seconds} s, ${s.outbox.stuck} stuck`);
      const p = s.anchor.periods;
      out(`anchor: ${s.anchor.batches_waiting} batch(es) waiting (oldest ${s.anchor.oldest_waiting_seconds} s); periods pending ${p.pending}, submitted ${p.submitted}, confirmed ${p.confirmed}, final ${p.final}, failed ${p.failed}; interval ${s.anchor.interval_seconds} s`);
      out(`webhooks: ${s.webhooks.due ?? "?"} due, ${s.webhooks.dead ?? "?"} dead`);
    }),
  },
  {
    command: "failures",
    description: "What waits for a hand: failed batches and anchors, stuck outbox events, dead webhook deliveries",
    action: guarded(async (broker, _args, h) => {
      const f = await call(broker, "admin.godFailures", { limit: 50 });
      const rows: unknown[][] = [["kind", "id", "detail"]];
      for (const b of f.batches) rows.push(["batch", b.id, `${b.tenant}: ${JSON.stringify(b.errors).slice(0, 80)}`]);
      for (const p of f.anchors) rows.push(["anchor period", p.id, `${p.batch_ids.length} batch(es): ${p.last_error ?? ""}`.slice(0, 100)]);
      for (const o of f.outbox) rows.push(["outbox", o.id, `${o.topic} -> ${o.pending.join(",")} after ${o.attempts} attempts`]);
      for (const d of f.webhook_deliveries) rows.push(["webhook delivery", d.id, `${d.event_type}: ${d.last_status ?? d.last_error ?? ""}`]);
      out(rows.length > 1 ? grid(h, rows) : "nothing has failed");
    }),
  },
  {
    command: "anchor-now",
    description: "Run an anchoring cycle now (opens a period for whatever waits)",
    action: guarded(async (broker) => {
      const r = await call(broker, "admin.godAnchorNow", {}, 120_000);
      out(`anchor cycle: ${JSON.stringify(r.result)}`);
    }),
  },
  {
    command: "retry <id>",
    description: "Retry what an id names: failed batch, failed anchor (period, dead letter, batch, job), outbox event (number), dead webhook delivery",
    action: guarded(async (broker, args) => {
      const r = await call(broker, "admin.godRetry", { id: String(args.id) }, 60_000);
      out(`retried ${r.kind} ${args.id}: ${JSON.stringify(r.result ?? { requeued: r.requeued, replayed: r.replayed })}`);
    }),
  },
  {
    command: "verify-ledger",
    description: "Walk every scan-ledger partition and the audit trail's hash chain; report the first broken link",
    options: [{ option: "-p, --partition <n>", description: "only this partition of the scan ledger" }],
    action: guarded(async (broker, args, h) => {
      const partition = args.options?.partition;
      const ledger = await call(broker, "scan.verifyLedger", partition !== undefined ? { partition: Number(partition) } : {}, 300_000);
      const rows: unknown[][] = [["chain", "ok", "entries", "first broken link"]];
      for (const p of ledger.partitions) rows.push([`scan ledger ${p.partition}`, p.ok ? "ok" : "BROKEN", p.count ?? "", p.broken ? `${p.broken.seq ?? ""} ${p.broken.reason}: ${p.broken.detail ?? ""}`.slice(0, 100) : ""]);
      const audit = await call(broker, "admin.verifyAudit", {}, 300_000);
      rows.push(["audit trail", audit.ok ? "ok" : "BROKEN", audit.count, audit.broken ? `${audit.broken.seq ?? ""} ${audit.broken.reason}` : ""]);
      out(grid(h, rows));
      out(ledger.ok && audit.ok ? "ledger verified: every chain holds" : "LEDGER BROKEN: see above");
    }),
  },
];

async function main() {
  const config = configOrExit("voketag repl");
  const joining = !!config.transporter;
  const base = brokerOptions(config);
  const options: any = {
    ...base,
    nodeID: `repl-${os.hostname()}-${process.pid}`,
    // The terminal is for the operator: only warnings and errors from the broker itself.
    logger: { ...(base.logger as any), options: { ...(base.logger as any).options, level: process.env.REPL_LOG_LEVEL || "warn" } },
    replOptions: { delimiter: "voketag $", customCommands: COMMANDS },
  };
  const broker = createNode(joining ? { ...config, services: [] } : config, options);
  await broker.start();
  if (joining) {
    try {
      await broker.waitForServices(["admin"], 15_000);
    } catch {
      out(`warning: no admin service answered in namespace "${config.namespace}" yet: commands will fail until one joins`);
    }
  }
  out(`VokeTag REPL — node ${broker.nodeID}, namespace "${config.namespace}", ${joining ? `joined ${config.transporter}` : "embedded node (no TRANSPORTER)"}`);
  out(`commands: ${COMMANDS.map((c) => c.command).join(", ")}; plus moleculer's (help, nodes, services, call, ...). Acting as ${ACTOR.id}.`);
  broker.repl();
}

main().catch((err) => {
  console.error("voketag repl: failed to start:", err);
  process.exit(1);
});
