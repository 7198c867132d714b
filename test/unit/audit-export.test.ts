import { Readable } from "node:stream";
import { auditCondition, auditCsvLine, AUDIT_CSV_HEADER, auditView, AuditRow } from "../../lib/audit-export";
import { pagedStream, concatStreams } from "../../lib/paged-stream";
import { parseCsv } from "../../lib/csv";

const row: AuditRow = {
  seq: 7,
  at: new Date("2026-01-02T03:04:05Z"),
  actor_type: "user",
  actor_id: "u1",
  role: "admin",
  tenant_id: null,
  action: "tenant.update",
  target_type: "tenant",
  target_id: "t1",
  request_id: "r1",
  network: "ab",
  entry: { before: { name: "=HYPERLINK(\"x\")" }, after: { name: "Acme, Inc." } },
  prev_hash: "0".repeat(64),
  hash: "1".repeat(64),
};

describe("audit filters", () => {
  it("numbers parameters from the given position and never splices values", () => {
    const c = auditCondition({ actor: "u1", action: "user.*", tenant_id: "t", from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z" }, 3);
    expect(c.sql).toBe("actor_id = $3 AND action LIKE $4 AND tenant_id = $5::uuid AND at >= $6::timestamptz AND at < $7::timestamptz");
    expect(c.params).toEqual(["u1", "user.%", "t", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]);
  });
  it("escapes LIKE wildcards inside a prefix and matches everything without filters", () => {
    expect(auditCondition({ action: "a_b%*" }).params).toEqual(["a\\_b\\%%"]);
    expect(auditCondition({})).toEqual({ sql: "TRUE", params: [] });
    expect(auditCondition({ actor: "x'; DROP TABLE audit_log; --" }).sql).toBe("actor_id = $1");
  });
});

describe("audit CSV", () => {
  it("writes one parsable row per entry, formulas defused", async () => {
    const text = AUDIT_CSV_HEADER + auditCsvLine(row);
    const rows: string[][] = [];
    for await (const r of parseCsv(Readable.from([text]))) rows.push(r.fields);
    expect(rows[0][0]).toBe("seq");
    expect(rows[1][0]).toBe("7");
    expect(rows[1][1]).toBe("2026-01-02T03:04:05.000Z");
    expect(JSON.parse(rows[1][12])).toEqual({ name: "Acme, Inc." });
    expect(rows[1][11].startsWith("{")).toBe(true);
    expect(auditView(row)).toMatchObject({ seq: 7, before: row.entry.before, after: row.entry.after, hash: row.hash });
  });
});

describe("paged streams", () => {
  it("fetches a page only when the reader wants more, and stops on a short page", async () => {
    const calls: (number | null)[] = [];
    const s = pagedStream<number>({
      pageSize: 3,
      head: "[",
      tail: "]",
      fetchPage: async (last) => {
        calls.push(last);
        const start = last ?? 0;
        return start >= 7 ? [] : [start + 1, start + 2, start + 3].filter((n) => n <= 7);
      },
      line: (n, first) => (first ? "" : ",") + n,
    });
    // Nothing is read before someone reads.
    await new Promise((r) => setImmediate(r));
    expect(calls.length).toBeLessThanOrEqual(1);
    let text = "";
    for await (const c of s) text += c;
    expect(text).toBe("[1,2,3,4,5,6,7]");
    expect(calls).toEqual([null, 3, 6]);
  });

  it("does not run ahead of a slow consumer", async () => {
    let fetched = 0;
    const big = "x".repeat(10_000);
    const s = pagedStream<number>({ pageSize: 10, fetchPage: async (last) => { fetched++; return Array.from({ length: 10 }, (_, i) => (last ?? 0) + i + 1); }, line: () => big });
    const it = s[Symbol.asyncIterator]();
    await it.next();
    await new Promise((r) => setTimeout(r, 50));
    // 64 KB of buffer is a page or two, not the endless source.
    expect(fetched).toBeLessThan(5);
    s.destroy();
  });

  it("concatenates sections in order", async () => {
    const part = (t: string) => () => Readable.from([t], { objectMode: false });
    let text = "";
    for await (const c of concatStreams([part("a"), part("b")], { head: "<", between: "|", tail: ">" })) text += c;
    expect(text).toBe("<a|b>");
  });
});
