import { createHash } from "node:crypto";
import fc from "fast-check";
import { canonicalize } from "../../lib/canonical";
import {
  ChainVerifier,
  GENESIS_HASH,
  type LedgerRow,
  ledgerEntryHash,
  nextLedgerRow,
  partitionFor,
  verifyChain,
} from "../../lib/ledger";

type Row = { seq: number; prev_hash: string; hash: string; entry: object };

function buildChain(n: number, from: { seq: number; hash: string } | null = null): Row[] {
  const rows: Row[] = [];
  let head = from;
  for (let i = 0; i < n; i++) {
    const seq = (head?.seq ?? 0) + 1;
    const row = nextLedgerRow(head, { scan_id: `scan-${seq}`, tag_id: `tag-${seq % 3}`, verdict: "authentic", score: seq % 100, at: `2025-03-01T12:00:${String(seq % 60).padStart(2, "0")}Z` });
    rows.push(row);
    head = { seq: row.seq, hash: row.hash };
  }
  return rows;
}

const copy = (rows: Row[]): Row[] => rows.map((r) => ({ ...r, entry: { ...r.entry } }));

describe("ledgerEntryHash", () => {
  it("is SHA-256 of the 32 raw prev bytes followed by the canonical entry", () => {
    const prev = "ab".repeat(32);
    const entry = { b: 2, a: [1, { d: null, c: "x" }] };
    const expected = createHash("sha256")
      .update(Buffer.concat([Buffer.from(prev, "hex"), Buffer.from(canonicalize(entry), "utf8")]))
      .digest("hex");
    expect(ledgerEntryHash(prev, entry)).toBe(expected);
    // The canonical form sorts keys, so key order does not matter.
    expect(ledgerEntryHash(prev, { a: [1, { c: "x", d: null }], b: 2 })).toBe(expected);
  });

  it("differs when the previous hash or the entry differs", () => {
    const e = { x: 1 };
    expect(ledgerEntryHash(GENESIS_HASH, e)).not.toBe(ledgerEntryHash("1".repeat(64), e));
    expect(ledgerEntryHash(GENESIS_HASH, e)).not.toBe(ledgerEntryHash(GENESIS_HASH, { x: 2 }));
  });

  it("rejects a malformed previous hash", () => {
    expect(() => ledgerEntryHash("abc", {})).toThrow(TypeError);
    expect(() => ledgerEntryHash("AB".repeat(32), {})).toThrow(TypeError);
  });

  it("GENESIS_HASH is 64 zeros", () => {
    expect(GENESIS_HASH).toBe("0".repeat(64));
  });
});

describe("verifyChain", () => {
  it("accepts a valid chain from genesis and reports its head", () => {
    const rows = buildChain(6);
    expect(rows[0].seq).toBe(1);
    expect(rows[0].prev_hash).toBe(GENESIS_HASH);
    expect(verifyChain(rows)).toEqual({ ok: true, count: 6, head: { seq: 6, hash: rows[5].hash } });
  });

  it("accepts an empty chain", () => {
    expect(verifyChain([])).toEqual({ ok: true, count: 0, head: null });
    const start = { seq: 4, hash: "f".repeat(64) };
    expect(verifyChain([], start)).toEqual({ ok: true, count: 0, head: start });
  });

  it("verifies a slice from a trusted start link", () => {
    const rows = buildChain(10);
    const res = verifyChain(rows.slice(4), { seq: 4, hash: rows[3].hash });
    expect(res).toEqual({ ok: true, count: 6, head: { seq: 10, hash: rows[9].hash } });
    // The same slice without its start is not a chain from genesis.
    expect(verifyChain(rows.slice(4))).toMatchObject({ ok: false, seq: 1, reason: "gap" });
  });

  it("accepts seq as the string pg returns for bigint", () => {
    const rows = buildChain(3).map((r) => ({ ...r, seq: String(r.seq) }));
    expect(verifyChain(rows as LedgerRow[])).toMatchObject({ ok: true, count: 3, head: { seq: 3 } });
  });

  it("detects an edited entry at its seq (bad_hash)", () => {
    const rows = copy(buildChain(6));
    (rows[2].entry as Record<string, unknown>).verdict = "suspicious";
    expect(verifyChain(rows)).toMatchObject({ ok: false, seq: 3, reason: "bad_hash" });
  });

  it("detects an edited entry whose hash was recomputed at the next seq (bad_prev)", () => {
    const rows = copy(buildChain(6));
    (rows[2].entry as Record<string, unknown>).verdict = "suspicious";
    rows[2].hash = ledgerEntryHash(rows[2].prev_hash, rows[2].entry);
    expect(verifyChain(rows)).toMatchObject({ ok: false, seq: 4, reason: "bad_prev" });
  });

  it("detects a deleted entry as a gap at the missing seq", () => {
    const rows = buildChain(6);
    const res = verifyChain([...rows.slice(0, 3), ...rows.slice(4)]);
    expect(res).toMatchObject({ ok: false, seq: 4, reason: "gap" });
    expect(!res.ok && res.detail).toContain("4");
  });

  it("detects a deleted entry renumbered to close the gap (bad_prev)", () => {
    const rows = buildChain(6);
    const tampered = [...rows.slice(0, 3), ...rows.slice(4).map((r) => ({ ...r, seq: r.seq - 1 }))];
    expect(verifyChain(tampered)).toMatchObject({ ok: false, seq: 4, reason: "bad_prev" });
  });

  it("detects two swapped entries", () => {
    const rows = buildChain(6);
    // Rows moved with their seq: the list is out of order.
    expect(verifyChain([rows[0], rows[1], rows[3], rows[2], rows[4], rows[5]])).toMatchObject({ ok: false, seq: 3, reason: "gap" });
    // Rows renumbered into the swapped order: the new seq 3 links to the old seq 3, not to seq 2.
    const renumbered = [rows[0], rows[1], { ...rows[3], seq: 3 }, { ...rows[2], seq: 4 }, rows[4], rows[5]];
    expect(verifyChain(renumbered)).toMatchObject({ ok: false, seq: 3, reason: "bad_prev" });
    // Payloads swapped, links kept: the content no longer matches the hash.
    const payloads = copy(rows);
    [payloads[2].entry, payloads[3].entry] = [payloads[3].entry, payloads[2].entry];
    expect(verifyChain(payloads)).toMatchObject({ ok: false, seq: 3, reason: "bad_hash" });
    // Payloads swapped and the two hashes recomputed: caught where the old chain resumes.
    const rehashed = copy(payloads);
    rehashed[2].hash = ledgerEntryHash(rehashed[2].prev_hash, rehashed[2].entry);
    rehashed[3].prev_hash = rehashed[2].hash;
    rehashed[3].hash = ledgerEntryHash(rehashed[3].prev_hash, rehashed[3].entry);
    expect(verifyChain(rehashed)).toMatchObject({ ok: false, seq: 5, reason: "bad_prev" });
  });

  it("detects a fork: two valid entries claiming the same seq", () => {
    const rows = buildChain(4);
    const alt = nextLedgerRow({ seq: 2, hash: rows[1].hash }, { scan_id: "forged" });
    expect(alt.seq).toBe(3);
    const res = verifyChain([rows[0], rows[1], rows[2], alt, rows[3]]);
    expect(res).toMatchObject({ ok: false, seq: 3, reason: "fork" });
    // Even an exact duplicate is a second row for one position.
    expect(verifyChain([rows[0], rows[1], rows[1], rows[2]])).toMatchObject({ ok: false, seq: 2, reason: "fork" });
  });

  it("detects a chain that does not start from genesis (bad_prev at 1)", () => {
    const rows = buildChain(3, { seq: 0, hash: "1".repeat(64) });
    expect(verifyChain(rows)).toMatchObject({ ok: false, seq: 1, reason: "bad_prev" });
  });

  it("detects malformed rows", () => {
    const rows = copy(buildChain(3));
    rows[1].hash = rows[1].hash.toUpperCase();
    expect(verifyChain(rows)).toMatchObject({ ok: false, seq: 2, reason: "bad_hash" });
    expect(verifyChain([{ ...buildChain(1)[0], seq: 1.5 }])).toMatchObject({ ok: false, seq: 1, reason: "gap" });
  });

  it("rejects an invalid start link", () => {
    expect(() => verifyChain([], { seq: -1, hash: GENESIS_HASH })).toThrow(TypeError);
    expect(() => verifyChain([], { seq: 1, hash: "zz" })).toThrow(TypeError);
  });
});

describe("ChainVerifier", () => {
  it("verifies page by page and keeps the first failure", () => {
    const rows = copy(buildChain(9));
    (rows[5].entry as Record<string, unknown>).score = 99;
    const v = new ChainVerifier();
    expect(v.pushAll(rows.slice(0, 3))).toBeNull();
    expect(v.head).toEqual({ seq: 3, hash: rows[2].hash });
    expect(v.pushAll(rows.slice(3, 6))).toMatchObject({ seq: 6, reason: "bad_hash" });
    expect(v.push(rows[6])).toMatchObject({ seq: 6, reason: "bad_hash" });
    expect(v.ok).toBe(false);
    expect(v.count).toBe(5);
    expect(v.result()).toEqual(verifyChain(rows));
  });

  // Arbitrary chains, arbitrary tampering, arbitrary page sizes: streaming equals batch.
  const mutation = fc.oneof(
    fc.constant({ kind: "none" as const }),
    fc.record({ kind: fc.constant("edit" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("swap" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("fork" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("rehash" as const), at: fc.nat() }),
  );

  function mutate(rows: Row[], m: { kind: string; at?: number }): Row[] {
    const out = copy(rows);
    if (m.kind === "none" || out.length === 0) return out;
    const i = (m.at ?? 0) % out.length;
    switch (m.kind) {
      case "edit":
        (out[i].entry as Record<string, unknown>).tampered = true;
        break;
      case "rehash":
        (out[i].entry as Record<string, unknown>).tampered = true;
        out[i].hash = ledgerEntryHash(out[i].prev_hash, out[i].entry);
        break;
      case "delete":
        out.splice(i, 1);
        break;
      case "swap": {
        if (out.length < 2) break;
        const j = (m.at ?? 0) % (out.length - 1);
        [out[j], out[j + 1]] = [out[j + 1], out[j]];
        break;
      }
      case "fork":
        out.splice(i + 1, 0, nextLedgerRow(i === 0 ? null : { seq: out[i - 1].seq, hash: out[i - 1].hash }, { forged: i }));
        break;
    }
    return out;
  }

  it("equals verifyChain for any chain, tampering and paging", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 25 }),
        mutation,
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 10 }),
        fc.boolean(),
        (n, m, pageSizes, fromStart) => {
          const full = buildChain(n + 2);
          const start = fromStart ? { seq: 2, hash: full[1].hash } : undefined;
          const rows = mutate(fromStart ? full.slice(2) : full.slice(0, n), m);
          const batch = verifyChain(rows, start);
          const v = new ChainVerifier(start);
          let i = 0;
          let p = 0;
          while (i < rows.length) {
            const size = pageSizes[p++ % pageSizes.length];
            v.pushAll(rows.slice(i, i + size));
            i += size;
          }
          expect(v.result()).toEqual(batch);
          if (m.kind === "none") expect(batch.ok).toBe(true);
          if ((m.kind === "edit" || m.kind === "swap" || m.kind === "fork") && rows.length > 1) expect(batch.ok).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("partitionFor", () => {
  it("is the first 4 bytes of SHA-256 modulo n, hence stable", () => {
    const key = "0b3f3c5e-tag";
    const first4 = createHash("sha256").update(key).digest().readUInt32BE(0);
    expect(partitionFor(key, 16)).toBe(first4 % 16);
    expect(partitionFor(key, 16)).toBe(partitionFor(key, 16));
    expect(partitionFor(key, 1)).toBe(0);
  });

  it("stays in range and spreads keys over the partitions", () => {
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionFor(`tag-${i}`, 8)]++;
    for (const c of counts) {
      expect(c).toBeGreaterThan(800);
      expect(c).toBeLessThan(1200);
    }
  });

  it("rejects a bad partition count", () => {
    expect(() => partitionFor("x", 0)).toThrow(RangeError);
    expect(() => partitionFor("x", 2.5)).toThrow(RangeError);
  });
});
