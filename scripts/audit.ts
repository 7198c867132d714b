// `npm audit --omit=dev --audit-level=high` with a dated allow-list (.ci/audit-allowlist.json).
// A high or critical advisory in a production dependency fails the build when a fix is available;
// one without a fix fails too until it is on the allow-list with a reason and an expiry date, and
// an expired entry fails again (someone must look at it). An entry never excuses an advisory that
// has a fix: upgrade instead. When the advisory service cannot be reached the run says so loudly
// and passes, unless VOKETAG_REQUIRE_AUDIT=1.
//
//   node --import tsx scripts/audit.ts [--report audit.json] [--allowlist path] [--today YYYY-MM-DD]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

export interface AllowEntry {
  /** GHSA id (GHSA-xxxx-xxxx-xxxx), advisory URL, or npm advisory number. */
  id: string;
  package: string;
  reason: string;
  /** YYYY-MM-DD: the entry stops applying after this day. */
  expires: string;
  added?: string;
}

export interface Finding {
  package: string;
  severity: string;
  advisories: string[];
  titles: string[];
  fixAvailable: boolean;
  verdict: "fail-fix-available" | "fail-not-allowed" | "fail-allowlist-expired" | "allowed";
  detail: string;
}

export interface AuditOutcome {
  ok: boolean;
  unreachable?: string;
  findings: Finding[];
  /** Allow-list problems that fail on their own (malformed entries). */
  errors: string[];
  /** Entries that matched nothing (the advisory is gone: delete them). */
  unused: string[];
}

const SEVERE = new Set(["high", "critical"]);

function advisoryIds(via: any): string[] {
  if (typeof via !== "object" || via === null) return [];
  const ids: string[] = [];
  if (via.url) {
    ids.push(via.url);
    const ghsa = /GHSA-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}/i.exec(via.url);
    if (ghsa) ids.push(ghsa[0]);
  }
  if (via.source !== undefined) ids.push(String(via.source));
  return ids;
}

export function validateAllowlist(entries: unknown): string[] {
  const errors: string[] = [];
  if (!Array.isArray(entries)) return ["the allow-list must be a JSON array"];
  entries.forEach((e: any, i) => {
    const where = `allow-list entry ${i}`;
    if (!e || typeof e !== "object") return errors.push(`${where}: not an object`);
    for (const k of ["id", "package", "reason", "expires"]) if (typeof e[k] !== "string" || !e[k].trim()) errors.push(`${where}: "${k}" is required`);
    if (typeof e.expires === "string" && !/^\d{4}-\d{2}-\d{2}$/.test(e.expires)) errors.push(`${where}: "expires" must be YYYY-MM-DD`);
    if (typeof e.reason === "string" && e.reason.trim().length < 20) errors.push(`${where}: "reason" must say why (20 characters at least)`);
  });
  return errors;
}

/** Judges an `npm audit --json` report (npm 7+ format) against the allow-list on `today`. */
export function evaluateAudit(report: any, allowlist: AllowEntry[], today: string): AuditOutcome {
  if (report?.error || report?.statusCode || (report?.message && !report.vulnerabilities))
    return { ok: true, unreachable: report.error?.summary || report.message || `status ${report.statusCode}`, findings: [], errors: [], unused: [] };
  const errors = validateAllowlist(allowlist);
  const findings: Finding[] = [];
  const used = new Set<AllowEntry>();
  for (const [name, v] of Object.entries<any>(report?.vulnerabilities ?? {})) {
    if (!SEVERE.has(v.severity)) continue;
    const direct = (v.via ?? []).filter((x: any) => typeof x === "object");
    // Severe only through another package: that package is judged on its own line.
    if (!direct.length) continue;
    const ids = direct.flatMap(advisoryIds);
    const titles = direct.map((x: any) => x.title).filter(Boolean);
    const fixAvailable = !!v.fixAvailable;
    const base = { package: name, severity: v.severity, advisories: ids, titles, fixAvailable };
    if (fixAvailable) {
      const how = typeof v.fixAvailable === "object" ? `upgrade ${v.fixAvailable.name} to ${v.fixAvailable.version}${v.fixAvailable.isSemVerMajor ? " (semver-major)" : ""}` : "run `npm audit fix`";
      findings.push({ ...base, verdict: "fail-fix-available", detail: `a fix is available: ${how}` });
      continue;
    }
    const entry = allowlist.find((e) => e.package === name && ids.some((id: string) => id.toLowerCase() === String(e.id).toLowerCase()));
    if (!entry) {
      findings.push({ ...base, verdict: "fail-not-allowed", detail: `no fix yet: add it to .ci/audit-allowlist.json with a reason and an expiry date (ids: ${ids.join(", ")})` });
      continue;
    }
    used.add(entry);
    if (entry.expires < today) findings.push({ ...base, verdict: "fail-allowlist-expired", detail: `allow-list entry expired on ${entry.expires}: look again (${entry.reason})` });
    else findings.push({ ...base, verdict: "allowed", detail: `allowed until ${entry.expires}: ${entry.reason}` });
  }
  const unused = allowlist.filter((e) => !used.has(e)).map((e) => `${e.package} ${e.id}`);
  const ok = !errors.length && findings.every((f) => f.verdict === "allowed");
  return { ok, findings, errors, unused };
}

function main(argv: string[]) {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const root = path.resolve(__dirname, "..");
  const allowPath = arg("--allowlist") ?? path.join(root, ".ci", "audit-allowlist.json");
  const today = arg("--today") ?? new Date().toISOString().slice(0, 10);
  let raw: string;
  const reportFile = arg("--report");
  if (reportFile) raw = fs.readFileSync(reportFile, "utf8");
  else {
    const r = spawnSync("npm", ["audit", "--omit=dev", "--audit-level=high", "--json"], { cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    raw = r.stdout;
  }
  let report: any;
  try {
    report = JSON.parse(raw);
  } catch {
    report = { error: { summary: `npm audit printed no JSON: ${raw.slice(0, 200)}` } };
  }
  const allowlist: AllowEntry[] = JSON.parse(fs.readFileSync(allowPath, "utf8"));
  const out = evaluateAudit(report, allowlist, today);
  if (out.unreachable) {
    const msg = `audit: the advisory service could not be asked (${out.unreachable})`;
    if (process.env.VOKETAG_REQUIRE_AUDIT === "1") {
      console.error(`${msg} — VOKETAG_REQUIRE_AUDIT=1, so this is a failure`);
      return 1;
    }
    console.warn(`\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!! SKIPPED ${msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`);
    return 0;
  }
  for (const e of out.errors) console.error(`audit: ${e}`);
  for (const f of out.findings) console[f.verdict === "allowed" ? "log" : "error"](`audit: ${f.verdict === "allowed" ? "allowed" : "FAIL"} ${f.severity} ${f.package}: ${f.titles.join("; ")} — ${f.detail}`);
  for (const u of out.unused) console.log(`audit: allow-list entry matches nothing any more, remove it: ${u}`);
  const total = report?.metadata?.vulnerabilities;
  console.log(`audit: ${out.ok ? "passed" : "failed"} (production dependencies; ${total ? `${total.high ?? 0} high, ${total.critical ?? 0} critical reported` : "no counts"})`);
  return out.ok ? 0 : 1;
}

if (require.main === module) process.exit(main(process.argv.slice(2)));
