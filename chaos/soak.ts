// Soak: the production topology (api×2, scan×2, one worker) under scans at half its peak rate for
// ten minutes: no error, every acknowledged scan stored, the ledger verifying, and every node's RSS
// after a full GC within 10% of where it stood after warm-up. The peak is measured first (a
// saturating closed loop), or given with --peak. `npm run soak` (10 min); `-- --duration=60` in CI.
//   npm run soak -- --duration=600 --out=/tmp/soak.json
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ScanLoad, stats, ackIds, Stats } from "./load";
import { scanStorage, verifyLedger } from "./checks";
import { startCluster, seedScanTokens, sleep } from "./cluster";
import { cleanupAll } from "./infra";
import { Recorder } from "./report";
import { inspectableNodeOptions, measureAfterGc, growthPct, MemorySample } from "./memory";

export interface SoakReport {
  duration_s: number;
  peak_per_s: number;
  rate_per_s: number;
  peak: Stats;
  soak: Stats;
  per_minute: { minute: number; sent: number; failed: number; p99: number }[];
  nodes: { id: string; services: string; warm: MemorySample; after: MemorySample; growth_pct: number; series_mb: number[] }[];
  stored: number;
  lost: number;
  ledger_ok: boolean;
  ledger_entries: number;
  errors: number;
  ok: boolean;
  problems: string[];
}

export async function runSoak(opts: { durationS: number; peak?: number; peakSeconds?: number; log?: (m: string) => void }): Promise<SoakReport> {
  const rec = new Recorder("soak", !opts.log);
  const log = opts.log ?? (() => undefined);
  try {
    const h = await startCluster(rec, {
      name: "soak",
      env: { NODE_OPTIONS: inspectableNodeOptions() },
      groups: [
        { name: "api", services: "api", count: 2 },
        { name: "scan", services: "scan", count: 2 },
        { name: "worker", services: "factory,anchor,admin,webhooks", count: 1 },
      ],
    });
    const seed = await seedScanTokens(h.baseUrl, 500);

    // Peak: as fast as 64 clients in flight allow. This is also the warm-up.
    let peakRate = opts.peak ?? 0;
    const peakLoad = new ScanLoad({ baseUrl: h.baseUrl, tokens: seed.tokens, ratePerSecond: opts.peak ? opts.peak : 5000, concurrency: 64 });
    await sleep((opts.peakSeconds ?? 15) * 1000);
    const peakSamples = await peakLoad.stop();
    const peak: Stats = stats(peakSamples);
    if (!opts.peak) peakRate = peak.throughput;
    const rate = Math.max(1, Math.round(peakRate / 2));
    log(`peak ${peakRate} scans/s (p99 ${peak.p99} ms); soaking at ${rate}/s for ${opts.durationS} s`);

    const measureAll = () => Promise.all(h.nodes.map((n) => measureAfterGc(n.handle.proc.pid!, n.handle.logs)));
    const warm = await measureAll();
    const series: number[][] = h.nodes.map(() => []);
    const load = new ScanLoad({ baseUrl: h.baseUrl, tokens: seed.tokens, ratePerSecond: rate, concurrency: 128 });
    const end = Date.now() + opts.durationS * 1000;
    const every = Math.max(15, Math.min(60, Math.floor(opts.durationS / 5)));
    while (Date.now() < end) {
      await sleep(Math.min(every * 1000, end - Date.now()));
      if (Date.now() >= end) break;
      const m = await measureAll();
      m.forEach((x, i) => series[i].push(x.rssMb));
      const s = stats(load.samples);
      log(`${Math.round(load.now() / 1000)} s: ${s.sent} sent, ${s.failed} failed, p99 ${s.p99} ms; RSS ${m.map((x) => x.rssMb).join(" / ")} MB`);
    }
    const samples = await load.stop();
    const after = await measureAll();
    const soak = stats(samples);
    const perMinute: SoakReport["per_minute"] = [];
    for (let t = 0; t < opts.durationS * 1000; t += 60_000) {
      const s = stats(samples, t, t + 60_000);
      perMinute.push({ minute: t / 60_000 + 1, sent: s.sent, failed: s.failed, p99: s.p99 });
    }
    const stored = await scanStorage(h.env.databaseUrl, ackIds(samples));
    const ledger = await verifyLedger(h.env.databaseUrl);
    const nodes = h.nodes.map((n, i) => ({ id: n.id, services: n.env.SERVICES, warm: warm[i], after: after[i], growth_pct: growthPct(warm[i].rssMb, after[i].rssMb), series_mb: series[i] }));
    const problems: string[] = [];
    if (soak.failed) problems.push(`${soak.failed} of ${soak.sent} scans failed: ${JSON.stringify(soak.statuses)}`);
    for (const n of nodes) if (n.growth_pct >= 10) problems.push(`${n.id} RSS grew ${n.growth_pct}% (${n.warm.rssMb} → ${n.after.rssMb} MB)`);
    if (stored.lost) problems.push(`${stored.lost} acknowledged scans not stored`);
    if (!ledger.ok) problems.push(`ledger: ${ledger.problems.join("; ")}`);
    const dead = h.nodes.filter((n) => n.handle.proc.exitCode !== null || n.handle.proc.signalCode);
    if (dead.length) problems.push(`nodes died: ${dead.map((n) => n.id).join(", ")}`);
    return {
      duration_s: opts.durationS,
      peak_per_s: peakRate,
      rate_per_s: rate,
      peak,
      soak,
      per_minute: perMinute,
      nodes,
      stored: stored.stored,
      lost: stored.lost,
      ledger_ok: ledger.ok,
      ledger_entries: ledger.entries,
      errors: soak.failed,
      ok: problems.length === 0,
      problems,
    };
  } finally {
    await cleanupAll();
  }
}

export function soakSummary(r: SoakReport): string {
  return [
    `soak: ${r.duration_s} s at ${r.rate_per_s} scans/s (half of the measured peak ${r.peak_per_s}/s): ${r.ok ? "PASS" : "FAIL"}`,
    `  scans: ${r.soak.sent} sent, ${r.soak.acknowledged} acknowledged, ${r.stored} stored, ${r.lost} lost, ${r.errors} errors; p50 ${r.soak.p50} ms, p99 ${r.soak.p99} ms, max ${r.soak.max} ms`,
    `  ledger: ${r.ledger_ok ? "verifies" : "BROKEN"} (${r.ledger_entries} entries)`,
    ...r.nodes.map((n) => `  ${n.id.padEnd(9)} RSS after GC ${n.warm.rssMb} → ${n.after.rssMb} MB (${n.growth_pct}%), heap ${n.warm.heapUsedMb} → ${n.after.heapUsedMb} MB; series ${n.series_mb.join(" ")}`),
    ...r.problems.map((p) => `  FAIL ${p}`),
  ].join("\n");
}

async function main() {
  const args = process.argv.slice(2);
  const arg = (n: string) => args.find((a) => a.startsWith(`--${n}=`))?.split("=")[1];
  const stop = async () => {
    await cleanupAll();
    process.exit(130);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
  const report = await runSoak({ durationS: Number(arg("duration") ?? 600), peak: arg("peak") ? Number(arg("peak")) : undefined, log: (m) => console.log(m) });
  console.log(soakSummary(report));
  const out = arg("out") ?? path.join(os.tmpdir(), `voketag-soak-${Date.now()}.json`);
  fs.writeFileSync(out, JSON.stringify({ command: `npm run soak -- ${args.join(" ")}`.trim(), machine: { cpus: os.cpus().length, node: process.version }, ...report }, null, 2));
  console.log(`JSON: ${out}`);
  process.exit(report.ok ? 0 : 1);
}

if (require.main === module)
  main().catch(async (err) => {
    console.error(err);
    await cleanupAll();
    process.exit(1);
  });
