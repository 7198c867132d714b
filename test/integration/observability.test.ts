// Metrics as Prometheus text with the business series, and alert rules and dashboards that name
// only series the code exports.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { runJourney, ADMIN } from "../support/journey";

const ROOT = path.resolve(__dirname, "..", "..");
const METRIC_RE = /\b(?:moleculer|voketag)_[a-z0-9_]+\b/g;

/** Metric families in a Prometheus text exposition (validated line by line). */
function parseExposition(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("# HELP ")) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      names.add(type[1]);
      continue;
    }
    // name{labels} value — labels are "key="value"" pairs, the value a float, NaN or ±Inf.
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!sample) throw new Error(`not Prometheus text: ${line}`);
    names.add(sample[1]);
  }
  return names;
}

/** Series the code registers (string literals in services/ and mixins/). */
function registeredInCode(): Set<string> {
  const out = new Set<string>();
  for (const dir of ["services", "mixins"])
    for (const f of fs.readdirSync(path.join(ROOT, dir)))
      for (const m of fs.readFileSync(path.join(ROOT, dir, f), "utf8").matchAll(/"(voketag_[a-z0-9_]+)"/g)) out.add(m[1]);
  return out;
}

describe("observability", () => {
  let node: NodeHandle;
  let base: string;
  let exposition = "";

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: "memory://", VERIFICATION_URL_BASE: base, VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password, ANCHOR_INTERVAL: "1" });
    const { jwt } = await runJourney(base);
    await new Promise((r) => setTimeout(r, 6000)); // gauges sampled every 5 s
    exposition = await (await fetch(`${base}/metrics`, { headers: jwt })).text();
  });
  afterAll(() => node?.stop());

  it("exports the business series as valid Prometheus text", () => {
    const names = parseExposition(exposition);
    for (const series of [
      "voketag_scans_total",
      "voketag_scan_risk_score_bucket",
      "voketag_products_registered_total",
      "voketag_outbox_pending",
      "voketag_outbox_lag_seconds",
      "voketag_anchor_periods",
      "voketag_anchor_transactions_total",
      "moleculer_request_total",
      "moleculer_request_time_bucket",
    ])
      expect({ series, exported: names.has(series) }).toEqual({ series, exported: true });
    expect(exposition).toMatch(/voketag_scans_total\{[^}]*verdict="authentic"[^}]*\} [1-9]/);
  });

  it("alert rules and dashboards name only exported series", () => {
    const live = parseExposition(exposition);
    const known = new Set([...live, ...registeredInCode()]);
    const base = (n: string) => n.replace(/_(bucket|sum|count)$/, "");
    const exprs: { where: string; expr: string }[] = [];
    for (const f of fs.readdirSync(path.join(ROOT, "ops", "alerts"))) {
      const doc = YAML.parse(fs.readFileSync(path.join(ROOT, "ops", "alerts", f), "utf8"));
      for (const g of doc.groups) for (const r of g.rules) exprs.push({ where: `${f}:${r.alert}`, expr: String(r.expr) });
    }
    for (const f of fs.readdirSync(path.join(ROOT, "ops", "grafana"))) {
      const d = JSON.parse(fs.readFileSync(path.join(ROOT, "ops", "grafana", f), "utf8"));
      for (const p of d.panels) for (const t of p.targets) exprs.push({ where: `${f}:${p.title}`, expr: t.expr });
    }
    expect(exprs.length).toBeGreaterThan(20);
    const unknown = exprs.flatMap(({ where, expr }) => [...expr.matchAll(METRIC_RE)].map((m) => m[0]).filter((n) => !known.has(n) && !known.has(base(n)) && !live.has(n)).map((n) => `${where}: ${n}`));
    expect(unknown).toEqual([]);
  });
});
