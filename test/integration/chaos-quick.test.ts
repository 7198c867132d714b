// The chaos suite in CI: `npm run chaos -- --quick` (every fault scenario shortened, within ten
// minutes), run as its own process exactly as a developer runs it; each scenario is one test here,
// failing with its own checks and figures. The scenarios start their own Postgres (pg_createcluster),
// Redis and NATS where they stop one, so the machine's shared services are never touched.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { needServices } from "../support/services";
import type { ScenarioResult } from "../../chaos/report";

const ROOT = path.resolve(__dirname, "..", "..");
const SCENARIOS = [1, 2, 3, 4, 5, 6];

describe("chaos --quick", () => {
  let available = false;
  let results: ScenarioResult[] = [];
  let output = "";
  let dir = "";

  beforeAll(async () => {
    available = await needServices("chaos-quick", ["postgres", "redis", "nats"]);
    if (!available) return;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-chaos-ci-"));
    const out = path.join(dir, "chaos.json");
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "chaos", "run.ts"), "--quick", `--out=${out}`], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      p.stdout.on("data", (b) => (output += b));
      p.stderr.on("data", (b) => (output += b));
      p.on("exit", resolve);
    });
    // eslint-disable-next-line no-console
    console.log(output.split("\n").filter((l) => !/uws|MaxListeners|trace-warnings|^\s+at /.test(l)).join("\n"));
    if (!fs.existsSync(out)) throw new Error(`the chaos run wrote no results (exit ${code})`);
    results = JSON.parse(fs.readFileSync(out, "utf8")).scenarios;
  }, 600_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each(SCENARIOS)("scenario %i holds", (id) => {
    if (!available) return;
    const r = results.find((x) => x.id === id);
    expect(r).toBeDefined();
    const failed = r!.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    expect({ scenario: `${id}. ${r!.name}`, error: r!.error ?? null, failed, lost: r!.lost }).toEqual({ scenario: `${id}. ${r!.name}`, error: null, failed: [], lost: 0 });
  });
});
