// Product rows as manufacturers send them: the checks shared by JSON bodies, CSV bodies and uploads.
import fc from "fast-check";
import { Readable } from "node:stream";
import {
  BatchChecker,
  HeadReader,
  checkProductRow,
  checkProductRows,
  copyField,
  CSV_COLUMNS,
  marketRegionsOf,
  productFromCsv,
  MAX_ROW_ERRORS,
} from "../../lib/products";
import { csvRecords } from "../../lib/csv";

describe("product rows", () => {
  it("normalises a GTIN to 14 digits and empty strings to null", () => {
    const r = checkProductRow({ sku: " A ", name: "N", serial: "S1", gtin: "9506000134352", lot: "", attributes: null }, 1);
    expect(r.errors).toEqual([]);
    expect(r.product).toEqual({ sku: "A", name: "N", serial: "S1", gtin: "09506000134352", lot: null, attributes: {} });
  });

  it("refuses a GTIN with a wrong check digit, naming the row and field", () => {
    const r = checkProductRow({ sku: "A", name: "N", serial: "S1", gtin: "09506000134353" }, 7);
    expect(r.errors).toEqual([{ row: 7, field: "gtin", message: expect.stringMatching(/check digit/) }]);
  });

  it("accepts GTIN-8, -12, -13 and -14", () => {
    for (const g of ["96385074", "036000291452", "4006381333931", "09506000134352"]) expect(checkProductRow({ sku: "A", name: "N", serial: "S", gtin: g }, 1).errors).toEqual([]);
  });

  it("limits attributes to a JSON object of at most 4 KB that jsonb can store", () => {
    const big = { x: "a".repeat(4100) };
    expect(checkProductRow({ sku: "A", name: "N", serial: "S", attributes: big }, 1).errors[0].message).toMatch(/4096 bytes/);
    expect(checkProductRow({ sku: "A", name: "N", serial: "S", attributes: [1] }, 1).errors[0].field).toBe("attributes");
    expect(checkProductRow({ sku: "A", name: "N", serial: "S", attributes: { a: "x\u0000y" } }, 1).errors[0].message).toMatch(/NUL/);
    expect(checkProductRow({ sku: "A", name: "N", serial: "S", attributes: { a: "\ud800" } }, 1).errors[0].message).toMatch(/surrogate/);
    expect(checkProductRow({ sku: "A", name: "N", serial: "S", attributes: { a: "😀 ok" } }, 1).errors).toEqual([]);
  });

  it("finds serials repeated in a batch per GTIN, a missing GTIN counting as one value", () => {
    const c = checkProductRows([
      { sku: "A", name: "N", serial: "S1", gtin: "09506000134352" },
      { sku: "A", name: "N", serial: "S1" },
      { sku: "A", name: "N", serial: "S1", gtin: "9506000134352" },
      { sku: "A", name: "N", serial: "S1", gtin: "" },
    ]);
    expect(c.errorCount).toBe(2);
    expect(c.errors).toEqual([
      { row: 3, field: "serial", message: "duplicate serial S1 (first at row 1)" },
      { row: 4, field: "serial", message: "duplicate serial S1 (first at row 2)" },
    ]);
  });

  it("keeps the first 100 errors and counts them all", () => {
    const c = new BatchChecker();
    for (let i = 1; i <= 250; i++) c.check({ sku: "A", name: "N", serial: "" }, i);
    expect(c.errors).toHaveLength(MAX_ROW_ERRORS);
    expect(c.errorCount).toBe(250);
    expect(c.ok).toBe(false);
    expect(c.count).toBe(0);
  });

  it("reads CSV records with a JSON attributes cell", async () => {
    const csv = 'sku,name,serial,gtin,lot,attributes\r\nW-1,"Diver, 100",SN1,09506000134352,L1,"{""colour"":""black""}"\r\nW-2,Pilot,SN2,,,\r\nW-3,Bad,SN3,,,{nope\r\n';
    const out: any[] = [];
    for await (const { row, record } of csvRecords(Readable.from([Buffer.from(csv)]), CSV_COLUMNS)) out.push(productFromCsv(record, row));
    expect(out[0].input).toMatchObject({ sku: "W-1", name: "Diver, 100", attributes: { colour: "black" } });
    expect(checkProductRow(out[1].input, 3).product).toMatchObject({ gtin: null, lot: null, attributes: {} });
    expect(out[2].error).toEqual({ row: 4, field: "attributes", message: "attributes is not valid JSON" });
  });

  it("refuses a CSV without a required column, on the header row", async () => {
    const run = async () => {
      for await (const _ of csvRecords(Readable.from([Buffer.from("sku,name,gtin\r\nA,B,\r\n")]), CSV_COLUMNS));
    };
    await expect(run()).rejects.toThrow(/row 1: missing required columns: "serial"/);
  });

  it("can leave repeated serials to the database (big files keep no per-row memory)", () => {
    const c = new BatchChecker({ serials: false });
    expect(c.check({ sku: "A", name: "N", serial: "S1" }, 2)).not.toBeNull();
    expect(c.check({ sku: "A", name: "N", serial: "S1" }, 3)).not.toBeNull();
    expect(c.ok).toBe(true);
  });

  it("checks a CSV header from the first bytes, before the rest of the file arrives", async () => {
    const ok = new HeadReader();
    expect(await ok.push(Buffer.from("\uFEFFsku,na"))).toBe(false);
    expect(await ok.push(Buffer.from("me,serial,gtin\r\nA,B,C,"))).toBe(true);
    const blank = new HeadReader();
    expect(await blank.push(Buffer.from("\r\n\r\nsku,name,serial\n"))).toBe(true);
    await expect(new HeadReader().push(Buffer.from("sku,name,colour\n"))).rejects.toThrow(/row 1: missing required columns: "serial"/);
    await expect(new HeadReader().push(Buffer.from("sku,name,serial,serial\n"))).rejects.toThrow(/duplicate columns/);
    await expect(new HeadReader().push(Buffer.from("sku,n\xe9,serial\n", "latin1"))).rejects.toThrow(/UTF-8/);
    const long = new HeadReader();
    await expect(long.push(Buffer.alloc(70 * 1024, "a"))).rejects.toThrow(/longer than/);
    const noBreak = new HeadReader();
    expect(await noBreak.push(Buffer.from("sku,name,serial"))).toBe(false);
    await expect(noBreak.end()).resolves.toBeUndefined();
    await expect(new HeadReader().end()).rejects.toThrow(/header row is required/);
  });

  it("reads market regions from JSON arrays and query strings alike", () => {
    expect(marketRegionsOf(["br", "PT", "br"])).toEqual(["BR", "PT"]);
    expect(marketRegionsOf("br, pt")).toEqual(["BR", "PT"]);
    expect(marketRegionsOf(undefined)).toEqual([]);
  });

  it("escapes COPY text fields so any string round-trips", () => {
    expect(copyField(null)).toBe("\\N");
    expect(copyField("a\tb\nc\\d\re")).toBe("a\\tb\\nc\\\\d\\re");
    // Decoding as PostgreSQL does gives the original back.
    const decode = (s: string) => s.replace(/\\(.)/g, (_, c) => (c === "t" ? "\t" : c === "n" ? "\n" : c === "r" ? "\r" : c));
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => decode(copyField(s)) === s && !/[\t\n\r]/.test(copyField(s))));
  });
});
