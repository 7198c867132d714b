// ops/alerts/anchor.rules.yml: well-formed Prometheus rules that only name series the anchor service
// really registers (and every series it registers is documented at the top of the file).
import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { ANCHOR_METRICS } from "../../services/anchor.service";

const FILE = path.join(__dirname, "..", "..", "ops", "alerts", "anchor.rules.yml");

describe("anchor alert rules", () => {
  const text = fs.readFileSync(FILE, "utf8");
  const doc = parse(text);
  const rules: any[] = doc.groups.flatMap((g: any) => g.rules);
  const known = new Set<string>(Object.values(ANCHOR_METRICS));

  it("are Prometheus rule groups: each alert named once, with an expression, a severity and a summary", () => {
    expect(doc.groups.length).toBeGreaterThan(0);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(typeof r.alert).toBe("string");
      expect(typeof r.expr).toBe("string");
      expect(["warning", "critical"]).toContain(r.labels?.severity);
      expect(r.annotations?.summary).toBeTruthy();
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
    }
  });

  it("name only series the anchor service registers, and cover the wallet balance, dead letters and the RPC", () => {
    const used = new Set(rules.flatMap((r) => [...String(r.expr).matchAll(/\bvoketag_anchor_[a-z_]+/g)].map((m) => m[0])));
    for (const s of used) expect(known).toContain(s);
    for (const s of [ANCHOR_METRICS.lowBalance, ANCHOR_METRICS.balance, ANCHOR_METRICS.deadLetters, ANCHOR_METRICS.chainUp]) expect(used).toContain(s);
    for (const s of known) expect(text).toContain(`#   ${s}`);
  });
});
