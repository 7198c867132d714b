// `npm run chaos` runs the six fault scenarios one after another and prints sent / acknowledged /
// stored / lost for each, with the checks and figures; `-- --quick` shortens every scenario (CI,
// within 10 minutes). Results go to a JSON file as well (--out=path, default in the temp dir).
//   npm run chaos -- --quick --only=1,3 --out=/tmp/chaos.json   (--budget=570: seconds for the whole run)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanupAll } from "./infra";
import { Recorder, ScenarioResult, summary } from "./report";
import type { Scenario } from "./scenarios/types";
import { nodeKill } from "./scenarios/1-node-kill";
import { postgresRestart } from "./scenarios/2-postgres-restart";
import { redisOutage } from "./scenarios/3-redis-outage";
import { natsRestart } from "./scenarios/4-nats-restart";
import { chainRpcDown } from "./scenarios/5-chain-rpc-down";
import { webhookReceiverDown } from "./scenarios/6-webhook-receiver-down";

export const SCENARIOS: Scenario[] = [nodeKill, postgresRestart, redisOutage, natsRestart, chainRpcDown, webhookReceiverDown];

export async function runScenario(s: Scenario, quick: boolean, maxSeconds = Infinity): Promise<ScenarioResult> {
  const rec = new Recorder(`${s.id}`);
  const t0 = Date.now();
  console.log(`\n== ${s.id}. ${s.name}: ${s.fault}${quick ? " (quick)" : ""}`);
  let error: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const budget = Math.min(s.budget(quick), maxSeconds);
  try {
    if (budget < 30) throw new Error("not run: the run's time budget is spent");
    await Promise.race([
      s.run({ quick, rec }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario exceeded its ${budget} s budget`)), budget * 1000);
      }),
    ]);
  } catch (err) {
    const msg = (err as Error)?.message ?? String(err);
    rec.log(`ERROR ${msg}`);
    // The report keeps the first line and the end (a node's last log lines say why it died).
    const lines = msg.split("\n");
    const why = lines.filter((l) => /Error:|failed|FATAL/i.test(l) && !l.startsWith("{")).slice(0, 3);
    error = lines.length > 6 ? [...new Set([lines[0], ...why])].join(" | ") : lines.join(" | ");
  } finally {
    clearTimeout(timer);
    await cleanupAll();
  }
  const c = rec.counts;
  return {
    id: s.id,
    name: s.name,
    fault: s.fault,
    quick,
    ok: !error && rec.checks.length > 0 && rec.checks.every((x) => x.ok) && c.lost === 0,
    duration_s: Math.round((Date.now() - t0) / 100) / 10,
    unit: c.unit,
    sent: c.sent,
    acknowledged: c.acknowledged,
    stored: c.stored,
    lost: c.lost,
    figures: rec.figures,
    checks: rec.checks,
    ...(error ? { error } : {}),
  };
}

function gitCommit(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: path.resolve(__dirname, ".."), encoding: "utf8" }).trim();
  } catch {
    return null;
  }
}

async function main() {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const only = args.find((a) => a.startsWith("--only="))?.slice(7).split(",").map(Number);
  const out = args.find((a) => a.startsWith("--out="))?.slice(6) ?? path.join(os.tmpdir(), `voketag-chaos-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const stop = async (sig: string) => {
    console.error(`\n${sig}: stopping everything the chaos run started…`);
    await cleanupAll();
    process.exit(130);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));

  const t0 = Date.now();
  const results: ScenarioResult[] = [];
  // --quick must finish within 10 minutes in CI: the scenarios share one budget (--budget=s).
  const total = Number(args.find((a) => a.startsWith("--budget="))?.slice(9) ?? (quick ? 570 : Infinity));
  for (const s of SCENARIOS.filter((x) => !only || only.includes(x.id))) {
    const left = total - (Date.now() - t0) / 1000 - 10; // 10 s for the last cleanup
    results.push(await runScenario(s, quick, left));
  }
  const report = {
    command: `npm run chaos${quick || only ? ` -- ${args.filter((a) => !a.startsWith("--out=")).join(" ")}` : ""}`,
    quick,
    started_at: new Date(t0).toISOString(),
    duration_s: Math.round((Date.now() - t0) / 1000),
    machine: { cpus: os.cpus().length, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, commit: gitCommit() },
    ok: results.every((r) => r.ok),
    scenarios: results,
  };
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(report, null, 2));
  console.log(summary(results, `VokeTag chaos run${quick ? " (quick)" : ""}: ${report.duration_s} s on ${report.machine.cpus} CPUs`));
  console.log(`\nJSON results: ${path.resolve(out)}`);
  process.exit(report.ok ? 0 : 1);
}

if (require.main === module)
  main().catch(async (err) => {
    console.error(err);
    await cleanupAll();
    process.exit(1);
  });
