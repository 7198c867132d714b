// scripts/audit.ts judges `npm audit --json` reports: a severe advisory with a fix fails; without a
// fix it fails unless allow-listed with a reason and a future expiry; an expired entry fails; the
// advisory service being unreachable is reported, not mistaken for a clean bill.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { evaluateAudit, validateAllowlist, AllowEntry } from "../../scripts/audit";

const ROOT = path.resolve(__dirname, "..", "..");
const GHSA = "GHSA-abcd-efgh-ijkl";
const advisory = (name: string, severity: string, fixAvailable: unknown, id = GHSA) => ({
  [name]: {
    name,
    severity,
    isDirect: true,
    via: [{ source: 1099999, name, title: `${name} does something bad`, url: `https://github.com/advisories/${id}`, severity, range: "<2.0.0" }],
    effects: [],
    range: "<2.0.0",
    fixAvailable,
  },
});
const report = (vulns: Record<string, unknown>) => ({ auditReportVersion: 2, vulnerabilities: vulns, metadata: { vulnerabilities: { high: 1, critical: 0 } } });
const entry = (over: Partial<AllowEntry> = {}): AllowEntry => ({ id: GHSA, package: "left-pad", reason: "no fixed release yet; we never pass user input to it", expires: "2026-12-31", ...over });

it("passes a clean report", () => {
  expect(evaluateAudit(report({}), [], "2026-11-22")).toMatchObject({ ok: true, findings: [] });
});

it("fails a high advisory that has a fix, even when allow-listed", () => {
  const out = evaluateAudit(report(advisory("left-pad", "high", { name: "left-pad", version: "2.0.1", isSemVerMajor: false })), [entry()], "2026-11-22");
  expect(out.ok).toBe(false);
  expect(out.findings[0]).toMatchObject({ verdict: "fail-fix-available", detail: "a fix is available: upgrade left-pad to 2.0.1" });
});

it("fails a critical advisory without a fix until it is allow-listed, then passes until the entry expires", () => {
  const r = report(advisory("left-pad", "critical", false));
  expect(evaluateAudit(r, [], "2026-11-22").findings[0].verdict).toBe("fail-not-allowed");
  const allowed = evaluateAudit(r, [entry()], "2026-11-22");
  expect(allowed.ok).toBe(true);
  expect(allowed.findings[0].verdict).toBe("allowed");
  expect(evaluateAudit(r, [entry()], "2026-12-31").ok).toBe(true); // the last day still counts
  const expired = evaluateAudit(r, [entry()], "2027-01-01");
  expect(expired.ok).toBe(false);
  expect(expired.findings[0]).toMatchObject({ verdict: "fail-allowlist-expired" });
  // An entry for another advisory of the same package does not cover this one.
  expect(evaluateAudit(r, [entry({ id: "GHSA-zzzz-zzzz-zzzz" })], "2026-11-22").ok).toBe(false);
});

it("ignores moderate and low advisories, and packages severe only through another", () => {
  const r = report({ ...advisory("a", "moderate", false), b: { name: "b", severity: "high", via: ["c"], fixAvailable: false }, ...advisory("c", "low", false) });
  expect(evaluateAudit(r, [], "2026-11-22")).toMatchObject({ ok: true, findings: [] });
});

it("rejects malformed allow-list entries and lists unused ones", () => {
  expect(validateAllowlist([{ id: "x", package: "y", reason: "because", expires: "soon" }])).toEqual([
    'allow-list entry 0: "expires" must be YYYY-MM-DD',
    'allow-list entry 0: "reason" must say why (20 characters at least)',
  ]);
  const out = evaluateAudit(report({}), [entry()], "2026-11-22");
  expect(out.unused).toEqual([`left-pad ${GHSA}`]);
  expect(validateAllowlist(JSON.parse(fs.readFileSync(path.join(ROOT, ".ci", "audit-allowlist.json"), "utf8")))).toEqual([]);
});

it("reports an unreachable advisory service instead of passing it off as clean", () => {
  const out = evaluateAudit({ message: "405 Method Not Allowed", statusCode: 405 }, [], "2026-11-22");
  expect(out.unreachable).toMatch(/405/);
});

it("the script exits 1 on a failing report, 0 on a clean one, and 1 when unreachable under VOKETAG_REQUIRE_AUDIT=1", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-audit-"));
  try {
    const run = (rep: unknown, env: Record<string, string> = {}) => {
      const f = path.join(dir, "r.json");
      fs.writeFileSync(f, JSON.stringify(rep));
      return spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "audit.ts"), "--report", f, "--today", "2026-11-22"], { encoding: "utf8", env: { ...process.env, ...env } });
    };
    const bad = run(report(advisory("left-pad", "high", true)));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("FAIL high left-pad");
    expect(run(report({})).status).toBe(0);
    expect(run({ message: "405 Method Not Allowed", statusCode: 405 }).status).toBe(0);
    const strict = run({ message: "405 Method Not Allowed", statusCode: 405 }, { VOKETAG_REQUIRE_AUDIT: "1" });
    expect(strict.status).toBe(1);
    expect(strict.stderr).toContain("could not be asked");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
