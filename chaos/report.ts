// What a scenario reports: the four counts every scenario prints (sent / acknowledged / stored /
// lost), its own figures, and named checks with the evidence. A scenario passes when it finished,
// every check holds and nothing acknowledged was lost.

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ScenarioResult {
  id: number;
  name: string;
  fault: string;
  quick: boolean;
  ok: boolean;
  duration_s: number;
  /** What the scenario counts: scans, products, events or deliveries (see `unit`). */
  unit: string;
  sent: number;
  acknowledged: number;
  stored: number;
  lost: number;
  figures: Record<string, unknown>;
  checks: Check[];
  error?: string;
}

export class Recorder {
  readonly checks: Check[] = [];
  readonly figures: Record<string, unknown> = {};
  counts = { unit: "scans", sent: 0, acknowledged: 0, stored: 0, lost: 0 };
  private t0 = Date.now();

  constructor(private prefix: string, private quiet = false) {}

  log(msg: string) {
    if (!this.quiet) console.log(`  [${this.prefix} +${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${msg}`);
  }

  check(name: string, ok: boolean, detail: string) {
    this.checks.push({ name, ok, detail });
    this.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
    return ok;
  }

  figure(key: string, value: unknown) {
    this.figures[key] = value;
  }

  count(c: Partial<Recorder["counts"]>) {
    Object.assign(this.counts, c);
  }
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const lpad = (s: string | number, n: number) => String(s).padStart(n);

export function summary(results: ScenarioResult[], title = "VokeTag chaos run"): string {
  const lines: string[] = [];
  lines.push(`\n${title}`);
  lines.push("=".repeat(title.length));
  lines.push(`${pad("#", 3)}${pad("scenario", 34)}${pad("result", 8)}${lpad("sent", 9)}${lpad("ack", 9)}${lpad("stored", 9)}${lpad("lost", 7)}  unit          time`);
  for (const r of results)
    lines.push(
      `${pad(r.id, 3)}${pad(r.name.slice(0, 33), 34)}${pad(r.ok ? "PASS" : "FAIL", 8)}${lpad(r.sent, 9)}${lpad(r.acknowledged, 9)}${lpad(r.stored, 9)}${lpad(r.lost, 7)}  ${pad(r.unit, 13)} ${r.duration_s} s`,
    );
  for (const r of results) {
    lines.push(`\n${r.id}. ${r.name} — ${r.fault}${r.quick ? " (quick)" : ""}: ${r.ok ? "PASS" : "FAIL"}`);
    if (r.error) lines.push(`   error: ${r.error}`);
    for (const c of r.checks) lines.push(`   ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
    const figs = Object.entries(r.figures);
    if (figs.length) lines.push(`   figures: ${figs.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ")}`);
  }
  const failed = results.filter((r) => !r.ok);
  lines.push(`\n${results.length - failed.length}/${results.length} scenarios passed${failed.length ? `; failed: ${failed.map((r) => r.id).join(", ")}` : ""}`);
  return lines.join("\n");
}
