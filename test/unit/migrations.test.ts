// Expand-then-contract, checked on every migration (docs/RUNBOOK-upgrades.md): while a rollout runs,
// the previous release works on the new schema, so a migration may add (tables, nullable columns,
// columns with defaults, indexes) but not take away or change what the previous release uses.
// A contract migration — dropping or renaming what a release before the previous one used — says
// so on its first line (`-- contract: <why it is safe now>`); the test/integration/rolling-upgrade
// suite runs the previous release on the migrated database for real.
import fs from "node:fs";
import path from "node:path";

const DIR = path.resolve(__dirname, "..", "..", "migrations");
const files = fs.readdirSync(DIR).filter((f) => f.endsWith(".sql")).sort();

// Statements that break a release still running against the schema.
const BREAKING: [RegExp, string][] = [
  [/\bdrop\s+table\b/i, "drops a table"],
  [/\bdrop\s+column\b/i, "drops a column"],
  [/\brename\s+(column\s+)?\w+\s+to\b|\brename\s+to\b/i, "renames a table or column"],
  [/\balter\s+column\s+\w+\s+(set\s+data\s+)?type\b/i, "changes a column's type"],
  [/\balter\s+column\s+\w+\s+set\s+not\s+null\b/i, "makes a column NOT NULL (old writers may leave it empty)"],
  [/\badd\s+column\s+(if\s+not\s+exists\s+)?\w+\s+[^,;]*\bnot\s+null\b(?![^,;]*\bdefault\b)/i, "adds a NOT NULL column without a default (old writers cannot fill it)"],
];

export function breakingStatements(sql: string): string[] {
  const code = sql.replace(/--.*$/gm, "");
  return BREAKING.filter(([re]) => re.test(code)).map(([, why]) => why);
}

it("numbers migrations uniquely, in the NNN_name.sql form", () => {
  const numbers = files.map((f) => /^(\d{3})_[a-z0-9_]+\.sql$/.exec(f)?.[1]);
  expect(numbers.every(Boolean)).toBe(true);
  expect(new Set(numbers).size).toBe(numbers.length);
});

it.each(files)("%s only expands the schema (or declares itself a contract step)", (f) => {
  const sql = fs.readFileSync(path.join(DIR, f), "utf8");
  if (/^--\s*contract:\s*\S.{10,}/.test(sql)) return;
  expect([f, breakingStatements(sql)]).toEqual([f, []]);
});

it("the check is able to fail", () => {
  expect(breakingStatements("ALTER TABLE products DROP COLUMN lot;")).toEqual(["drops a column"]);
  expect(breakingStatements("ALTER TABLE batches ADD COLUMN owner uuid NOT NULL;")).toEqual(["adds a NOT NULL column without a default (old writers cannot fill it)"]);
  expect(breakingStatements("ALTER TABLE batches ADD COLUMN n integer NOT NULL DEFAULT 0;")).toEqual([]);
  expect(breakingStatements("ALTER TABLE batches RENAME COLUMN name TO title;")).toEqual(["renames a table or column"]);
  expect(breakingStatements("ALTER TABLE scans ALTER COLUMN at TYPE timestamp;")).toEqual(["changes a column's type"]);
  expect(breakingStatements("-- DROP TABLE x in a comment\nCREATE INDEX i ON t (c);")).toEqual([]);
});
