import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CsvError, csvRecords, parseCsv, toCsvLine } from "../../lib/csv";

type Row = { row: number; fields: string[] };

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
async function* strings(...parts: string[]): AsyncGenerator<string> {
  yield* parts;
}
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const parseWhole = (text: string | Buffer, opts?: Parameters<typeof parseCsv>[1]) =>
  collect(parseCsv(chunksOf(Buffer.isBuffer(text) ? text : Buffer.from(text, "utf8"), Number.MAX_SAFE_INTEGER), opts));
const parseChunked = (text: string | Buffer, size: number, opts?: Parameters<typeof parseCsv>[1]) =>
  collect(parseCsv(chunksOf(Buffer.isBuffer(text) ? text : Buffer.from(text, "utf8"), size), opts));

async function expectCsvError(p: Promise<unknown>, row: number, message: RegExp) {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CsvError);
  expect((e as CsvError).row).toBe(row);
  expect((e as CsvError).message).toMatch(message);
}

const SIZES = [1, 2, 3, 4, 5, 6, 7];

describe("parseCsv edge cases (whole and in chunks of 1..7 bytes)", () => {
  const cases: [string, string, Row[]][] = [
    ["simple LF", "a,b\n1,2\n", [{ row: 1, fields: ["a", "b"] }, { row: 2, fields: ["1", "2"] }]],
    ["CRLF", "a,b\r\n1,2\r\n", [{ row: 1, fields: ["a", "b"] }, { row: 2, fields: ["1", "2"] }]],
    ["lone CR ends a record", "a,b\r1,2", [{ row: 1, fields: ["a", "b"] }, { row: 2, fields: ["1", "2"] }]],
    ["no trailing newline", "a,b\n1,2", [{ row: 1, fields: ["a", "b"] }, { row: 2, fields: ["1", "2"] }]],
    ["empty fields", ",\na,,\n,,b", [{ row: 1, fields: ["", ""] }, { row: 2, fields: ["a", "", ""] }, { row: 3, fields: ["", "", "b"] }]],
    ["quoted fields", '"a","b,c"\n"1",2', [{ row: 1, fields: ["a", "b,c"] }, { row: 2, fields: ["1", "2"] }]],
    ["escaped quotes", '"say ""hi""",""""\n', [{ row: 1, fields: ['say "hi"', '"'] }]],
    ["quoted empty field is a record", '""\n', [{ row: 1, fields: [""] }]],
    [
      "newlines inside quotes keep their bytes and count lines",
      'h\n"a\nb\r\nc\rd",x\nnext\n',
      [{ row: 1, fields: ["h"] }, { row: 2, fields: ["a\nb\r\nc\rd", "x"] }, { row: 6, fields: ["next"] }],
    ],
    ["blank lines are skipped but counted", "a\n\n\r\n\nb\n\n", [{ row: 1, fields: ["a"] }, { row: 5, fields: ["b"] }]],
    ["UTF-8 BOM dropped", "\uFEFFid,name\n1,x\n", [{ row: 1, fields: ["id", "name"] }, { row: 2, fields: ["1", "x"] }]],
    ["BOM only in first position", "a\n\uFEFFb\n", [{ row: 1, fields: ["a"] }, { row: 2, fields: ["\uFEFFb"] }]],
    ["multi-byte characters", "é,€\n😀,日本語\n", [{ row: 1, fields: ["é", "€"] }, { row: 2, fields: ["😀", "日本語"] }]],
    ["spaces are data", " a , b \n", [{ row: 1, fields: [" a ", " b "] }]],
    ["trailing comma at EOF", "a,", [{ row: 1, fields: ["a", ""] }]],
    ["empty input", "", []],
    ["only newlines", "\n\r\n\n", []],
    ["only a BOM", "\uFEFF", []],
  ];

  it.each(cases)("%s", async (_name, text, expected) => {
    expect(await parseWhole(text)).toEqual(expected);
    for (const size of SIZES) expect(await parseChunked(text, size)).toEqual(expected);
  });

  it("accepts string chunks, including a surrogate pair split between them", async () => {
    const rows = await collect(parseCsv(strings("\uFEFFa,\uD83D", "\uDE00\n", '"x', '""y"', "\r", "\n2")));
    expect(rows).toEqual([
      { row: 1, fields: ["a", "😀"] },
      { row: 2, fields: ['x"y'] },
      { row: 3, fields: ["2"] },
    ]);
  });

  it("decodes a character split between a Buffer chunk and the next Buffer chunk", async () => {
    const euro = Buffer.from("€", "utf8"); // 3 bytes
    async function* parts() {
      yield Buffer.concat([Buffer.from("a,"), euro.subarray(0, 1)]);
      yield euro.subarray(1, 2);
      yield Buffer.concat([euro.subarray(2), Buffer.from("\n")]);
    }
    expect(await collect(parseCsv(parts()))).toEqual([{ row: 1, fields: ["a", "€"] }]);
  });
});

describe("parseCsv errors", () => {
  it.each<[string, string, number, RegExp]>([
    ["unterminated quote (row of the opening quote)", 'a\nb,"never\nclosed\n', 2, /unterminated/],
    ["unterminated quote at EOF right after it", 'a,"', 1, /unterminated/],
    ["quote in an unquoted field", 'a\nb\nab"c,d\n', 3, /quote inside unquoted field 1/],
    ["quote later in an unquoted field", "x,y\nok,5\"\n", 2, /quote inside unquoted field 2/],
    ["text after a closing quote", 'a\n"ab"c\n', 2, /after the closing quote/],
    ["space after a closing quote", '"ab" ,c\n', 1, /after the closing quote/],
  ])("%s", async (_name, text, row, message) => {
    await expectCsvError(parseWhole(text), row, message);
    for (const size of SIZES) await expectCsvError(parseChunked(text, size), row, message);
  });

  it("enforces maxFieldBytes in UTF-8 bytes, quoted or not", async () => {
    const opts = { maxFieldBytes: 8 };
    expect(await parseWhole("12345678,€€\n", opts)).toEqual([{ row: 1, fields: ["12345678", "€€"] }]);
    await expectCsvError(parseWhole("a\n123456789\n", opts), 2, /larger than 8 bytes/);
    await expectCsvError(parseWhole('a\n"1234\n5678"\n', opts), 2, /larger than 8 bytes/);
    await expectCsvError(parseWhole("a\n€€€\n", opts), 2, /larger than 8 bytes/); // 3 chars, 9 bytes
    for (const size of SIZES) await expectCsvError(parseChunked("a\n€€€\n", size, opts), 2, /larger than 8 bytes/);
  });

  it("stops an unterminated quote at the field limit instead of buffering the stream", async () => {
    let chunksRead = 0;
    async function* endless() {
      yield 'id,name\n1,"';
      for (;;) {
        chunksRead++;
        yield "x".repeat(1024);
      }
    }
    await expect(collect(parseCsv(endless(), { maxFieldBytes: 64 * 1024 }))).rejects.toThrow(/larger than 65536 bytes/);
    expect(chunksRead).toBeLessThanOrEqual(65);
  });

  it("enforces maxColumns", async () => {
    expect(await parseWhole("a,b,c\n", { maxColumns: 3 })).toEqual([{ row: 1, fields: ["a", "b", "c"] }]);
    await expectCsvError(parseWhole("a,b\n1,2,3,4\n", { maxColumns: 3 }), 2, /more than 3 columns/);
    await expectCsvError(parseWhole(",".repeat(100_000), { maxColumns: 3 }), 1, /more than 3 columns/);
  });

  it("has sane defaults: a 100 kB field and 1000 columns are refused", async () => {
    await expectCsvError(parseWhole("a\n" + "x".repeat(100_000) + "\n"), 2, /larger than/);
    await expectCsvError(parseWhole(",".repeat(1000)), 1, /columns/);
  });

  it("rejects invalid UTF-8 at the row where it occurs, after yielding the rows before it", async () => {
    const latin1 = Buffer.from("sku,name\nA1,Cafe\nA2,Caf\xe9 cr\xe8me\nA3,x\n", "latin1");
    for (const size of [...SIZES, latin1.length]) {
      const seen: Row[] = [];
      const run = (async () => {
        for await (const r of parseCsv(chunksOf(latin1, size))) seen.push(r);
      })();
      await expectCsvError(run, 3, /not valid UTF-8/);
      expect(seen).toEqual([
        { row: 1, fields: ["sku", "name"] },
        { row: 2, fields: ["A1", "Cafe"] },
      ]);
    }
    await expectCsvError(parseWhole(Buffer.from([0x61, 0x2c, 0xc3])), 1, /not valid UTF-8/); // truncated at EOF
    await expectCsvError(parseWhole(Buffer.from([0x61, 0x0a, 0xed, 0xa0, 0x80])), 2, /not valid UTF-8/); // encoded surrogate
    await expectCsvError(parseWhole(Buffer.from([0x61, 0x0a, 0xc0, 0xaf])), 2, /not valid UTF-8/); // overlong "/"
  });

  it("rejects a Buffer chunk cut mid-character followed by a string chunk", async () => {
    async function* mixed() {
      yield Buffer.from([0x61, 0xe2, 0x82]);
      yield "\n";
    }
    await expect(collect(parseCsv(mixed()))).rejects.toBeInstanceOf(CsvError);
  });
});

describe("parseCsv property: chunking never changes the result", () => {
  // Characters chosen to hit every parser path: delimiters, quotes, each line ending, multi-byte UTF-8.
  const char = fc.constantFrom("a", "Z", "0", " ", ",", '"', "\r", "\n", "é", "€", "😀", "'", "=");
  const field = fc.string({ unit: char, maxLength: 6 });
  const record = fc.array(field, { minLength: 1, maxLength: 4 });

  function serialise(records: string[][], o: { eol: string; quoteAll: boolean; trailing: boolean; bom: boolean }) {
    let text = o.bom ? "\uFEFF" : "";
    let line = 1;
    const expected: Row[] = [];
    records.forEach((fields, r) => {
      expected.push({ row: line, fields });
      const needs = (f: string) => o.quoteAll || /[",\r\n]/.test(f) || (fields.length === 1 && f === "");
      text += fields.map((f) => (needs(f) ? `"${f.replace(/"/g, '""')}"` : f)).join(",");
      line += fields.reduce((n, f) => n + (f.match(/\r\n|\r|\n/g)?.length ?? 0), 0);
      if (r < records.length - 1 || o.trailing) text += o.eol;
      line += 1;
    });
    return { text, expected };
  }

  it("parse(chunks of 1..7 bytes) equals parse(whole) equals what was written", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(record, { maxLength: 8 }),
        fc.record({ eol: fc.constantFrom("\n", "\r\n", "\r"), quoteAll: fc.boolean(), trailing: fc.boolean(), bom: fc.boolean() }),
        async (records, o) => {
          const { text, expected } = serialise(records, o);
          const whole = await parseWhole(text);
          expect(whole).toEqual(expected);
          for (const size of SIZES) expect(await parseChunked(text, size)).toEqual(whole);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("arbitrary bytes: chunked parsing gives the same rows or the same error as whole parsing", async () => {
    const outcome = async (p: Promise<Row[]>) =>
      p.then(
        (rows) => ({ rows }),
        (e: unknown) => ({ error: e instanceof CsvError ? `${e.row}:${e.message}` : String(e) }),
      );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...Buffer.from('a,"\r\n€', "utf8"), 0xff, 0xc3), { maxLength: 40 }), async (bytes) => {
        const data = Buffer.from(bytes);
        const whole = await outcome(parseWhole(data, { maxFieldBytes: 10 }));
        for (const size of SIZES) {
          expect(await outcome(parseChunked(data, size, { maxFieldBytes: 10 }))).toEqual(whole);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("parseCsv memory", () => {
  it("parses a 200,000-row stream with bounded heap", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const ROWS = 200_000;
    const pad = "x".repeat(120);
    let produced = 0;
    async function* generate(): AsyncGenerator<Buffer> {
      yield Buffer.from("sku,name,serial,notes\n");
      const batch: string[] = [];
      for (let i = 0; i < ROWS; i++) {
        batch.push(`SKU-${i},"Product ${i}, ""deluxe""",SN${i},${pad}\n`);
        if (batch.length === 500) {
          const b = Buffer.from(batch.join(""));
          produced += b.length;
          batch.length = 0;
          yield b;
        }
      }
    }

    gc();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    let count = 0;
    let last: Row | undefined;
    for await (const r of parseCsv(generate())) {
      count++;
      last = r;
      if (count % 20_000 === 0) {
        gc();
        peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
      }
    }
    expect(count).toBe(ROWS + 1);
    expect(last).toEqual({ row: ROWS + 1, fields: [`SKU-${ROWS - 1}`, `Product ${ROWS - 1}, "deluxe"`, `SN${ROWS - 1}`, pad] });
    expect(produced).toBeGreaterThan(30 * 1024 * 1024); // the file is far larger than the allowed growth
    expect(peak).toBeLessThan(8 * 1024 * 1024);
  });
});

describe("csvRecords", () => {
  const spec = { required: ["sku", "serial"], allowed: ["name", "gtin", "lot"] };
  const records = (text: string, s = spec) => collect(csvRecords(chunksOf(Buffer.from(text), 3), s));

  it("maps rows to the header and keeps row numbers", async () => {
    const out = await records(' sku ,name,serial\nA1,"Shoe, red",S1\n\n,,\nA2,Boot,S2\n');
    expect(out).toEqual([
      { row: 2, record: { sku: "A1", name: "Shoe, red", serial: "S1" } },
      { row: 5, record: { sku: "A2", name: "Boot", serial: "S2" } },
    ]);
    // Plain data records: no prototype to pollute or inherit from.
    expect(Object.getPrototypeOf(out[0].record)).toBeNull();
  });

  it("lists every missing required column", async () => {
    await expectCsvError(records("name,gtin\nx,1\n"), 1, /missing required columns: "sku", "serial"/);
  });

  it("rejects unknown columns, naming them", async () => {
    await expectCsvError(records("sku,serial,price,__proto__\n1,2,3,4\n"), 1, /unknown columns: "price", "__proto__"/);
  });

  it("rejects duplicate and empty column names", async () => {
    await expectCsvError(records("sku,serial,sku\n"), 1, /duplicate columns: "sku"/);
    await expectCsvError(records("sku,serial,\n"), 1, /empty column name/);
  });

  it("rejects rows with the wrong number of fields", async () => {
    await expectCsvError(records("sku,serial\n1,2\n3\n"), 3, /expected 2 fields, found 1/);
    await expectCsvError(records("sku,serial\n1,2,3\n"), 2, /expected 2 fields, found 3/);
  });

  it("rejects an empty file and accepts a header-only file", async () => {
    await expectCsvError(records(""), 1, /header row is required/);
    await expectCsvError(records("\uFEFF\n\n"), 1, /header row is required/);
    expect(await records("sku,serial\n")).toEqual([]);
  });

  it("passes parser errors through", async () => {
    await expectCsvError(records('sku,serial\n1,"2\n'), 2, /unterminated/);
  });
});

describe("toCsvLine", () => {
  it("quotes only when needed and ends with CRLF", () => {
    expect(toCsvLine(["a", "b c", 1, null])).toBe("a,b c,1,\r\n");
    expect(toCsvLine(['say "hi"', "x,y", "l1\nl2", "c\rr"])).toBe('"say ""hi""","x,y","l1\nl2","c\rr"\r\n');
    expect(toCsvLine([])).toBe("\r\n");
  });

  it.each(["=", "+", "-", "@", "\t", "\r"])("neutralises a string starting with %j", (c) => {
    const line = toCsvLine([`${c}HYPERLINK("http://evil.example")`]);
    const body = line.slice(0, -2);
    expect(body.replace(/^"/, "").startsWith(`'${c}`)).toBe(true);
  });

  it("does not touch numbers, including negative ones, or safe strings", () => {
    expect(toCsvLine([-5, 3.5, "a=b", "'already"])).toBe("-5,3.5,a=b,'already\r\n");
  });

  it("round-trips through parseCsv (with the formula guard applied)", async () => {
    const field = fc.oneof(fc.string({ unit: fc.constantFrom("a", ",", '"', "\n", "\r", "=", "-", "@", "+", "\t", " ", "€") }), fc.integer(), fc.constant(null));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(field, { minLength: 2, maxLength: 4 }), { minLength: 1, maxLength: 5 }), async (rows) => {
        const text = rows.map(toCsvLine).join("");
        const parsed = await parseWhole(text);
        const expected = rows.map((r) => r.map((f) => (f === null ? "" : typeof f === "number" ? String(f) : /^[=+\-@\t\r]/.test(f) ? "'" + f : f)));
        expect(parsed.map((p) => p.fields)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});
