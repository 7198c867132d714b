// Product rows as a manufacturer sends them (JSON or CSV): the checks every row must pass before a
// batch is registered. Pure, so the JSON path, the CSV stream and the tests share one definition.
import { isValidGtin, toGtin14, isGs1AiValue } from "./gs1";
import { csvRecords, CsvError } from "./csv";

export interface ProductInput {
  sku: string;
  name: string;
  serial: string;
  gtin?: string | null;
  lot?: string | null;
  attributes?: Record<string, unknown> | null;
}

export interface RowError {
  row: number;
  field?: string;
  message: string;
}

export const MAX_ATTRIBUTES_BYTES = 4096;
export const MAX_ROW_ERRORS = 100;
const LIMITS = { sku: 128, name: 256, serial: 128, lot: 20 };

/** Normalises one row (GTIN to 14 digits, empty strings to null) or returns why it is wrong. */
export function checkProductRow(input: any, row: number): { product?: Required<ProductInput>; errors: RowError[] } {
  const errors: RowError[] = [];
  if (!input || typeof input !== "object" || Array.isArray(input)) return { errors: [{ row, message: "row must be an object" }] };
  const str = (field: "sku" | "name" | "serial" | "lot", required: boolean): string | null => {
    const v = input[field];
    if (v === undefined || v === null || v === "") {
      if (required) errors.push({ row, field, message: `${field} is required` });
      return null;
    }
    if (typeof v !== "string") {
      errors.push({ row, field, message: `${field} must be a string` });
      return null;
    }
    const s = v.trim();
    if (s.length > LIMITS[field]) errors.push({ row, field, message: `${field} is longer than ${LIMITS[field]} characters` });
    if (/[\u0000-\u001f\u007f]/.test(s)) errors.push({ row, field, message: `${field} contains control characters` });
    return s;
  };
  const sku = str("sku", true);
  const name = str("name", true);
  const serial = str("serial", true);
  const lot = str("lot", false);
  let gtin: string | null = null;
  const g = input.gtin;
  if (g !== undefined && g !== null && g !== "") {
    const s = String(g).trim();
    if (!isValidGtin(s)) errors.push({ row, field: "gtin", message: "gtin is not a valid GTIN-8/12/13/14 (digits and check digit)" });
    else gtin = toGtin14(s);
  }
  let attributes: Record<string, unknown> = {};
  const a = input.attributes;
  if (a !== undefined && a !== null && a !== "") {
    if (typeof a !== "object" || Array.isArray(a)) errors.push({ row, field: "attributes", message: "attributes must be a JSON object" });
    else if (Buffer.byteLength(JSON.stringify(a)) > MAX_ATTRIBUTES_BYTES)
      errors.push({ row, field: "attributes", message: `attributes are larger than ${MAX_ATTRIBUTES_BYTES} bytes` });
    else if (!storableJson(a)) errors.push({ row, field: "attributes", message: "attributes contain a NUL character or a lone UTF-16 surrogate" });
    else attributes = a;
  }
  // A GTIN makes a GS1 Digital Link, whose lot and serial use GS1's character set (at most 20).
  if (gtin && serial && !isGs1AiValue(serial)) errors.push({ row, field: "serial", message: "with a GTIN, serial must be 1-20 GS1 characters (letters, digits and !\"%&'()*+,-./:;<=>?_)" });
  if (gtin && lot && !isGs1AiValue(lot)) errors.push({ row, field: "lot", message: "with a GTIN, lot must be 1-20 GS1 characters" });
  if (errors.length) return { errors };
  return { product: { sku: sku!, name: name!, serial: serial!, gtin, lot, attributes }, errors };
}

/** Tracks serials seen in one batch: unique per (gtin, serial), a missing GTIN counting as one value. */
export class SerialSet {
  private seen = new Map<string, number>();
  add(p: { gtin?: string | null; serial: string }, row: number): RowError | null {
    const key = `${p.gtin ?? ""}\u0000${p.serial}`;
    const first = this.seen.get(key);
    if (first !== undefined) return { row, field: "serial", message: `duplicate serial ${p.serial} (first at row ${first})` };
    this.seen.set(key, row);
    return null;
  }
}

/** Checks a whole inline batch; rows are numbered from 1. */
export function checkProductRows(rows: unknown[]): { products: Required<ProductInput>[]; errors: RowError[]; errorCount: number } {
  const checker = new BatchChecker();
  const products: Required<ProductInput>[] = [];
  rows.forEach((input, i) => {
    const p = checker.check(input, i + 1);
    if (p) products.push(p);
  });
  return { products, errors: checker.errors, errorCount: checker.errorCount };
}

// PostgreSQL's jsonb refuses \u0000 and unpaired surrogates: such a row would fail the whole COPY.
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
function storableJson(v: unknown): boolean {
  if (typeof v === "string") return !UNSTORABLE.test(v);
  if (Array.isArray(v)) return v.every(storableJson);
  if (v && typeof v === "object") return Object.entries(v).every(([k, x]) => !UNSTORABLE.test(k) && storableJson(x));
  return true;
}

// ---- CSV files -------------------------------------------------------------------------------

/** A product file's columns: the JSON body's field names; attributes is a JSON object in its cell. */
export const CSV_COLUMNS = { required: ["sku", "name", "serial"], allowed: ["gtin", "lot", "attributes"] };

/** A header row longer than this is refused (the header is read before the rest of the file). */
export const MAX_HEADER_BYTES = 64 * 1024;

/**
 * Checks a CSV file's header from its first bytes, so a file with a missing or unknown column is
 * refused before the rest of it arrives. push() answers true once the header has been checked.
 */
export class HeadReader {
  private parts: Buffer[] = [];
  private length = 0;
  private checked = false;

  async push(chunk: Buffer): Promise<boolean> {
    if (this.checked) return true;
    this.parts.push(chunk);
    this.length += chunk.length;
    const all = Buffer.concat(this.parts, this.length);
    let start = 0;
    while (start < all.length && (all[start] === 10 || all[start] === 13)) start++; // blank lines before the header
    let end = start;
    while (end < all.length && all[end] !== 10 && all[end] !== 13) end++;
    if (end < all.length) {
      await checkHeaderLine(all.subarray(0, end));
      this.checked = true;
      this.parts = [];
      return true;
    }
    if (this.length > MAX_HEADER_BYTES) throw new CsvError(1, `the header row is longer than ${MAX_HEADER_BYTES} bytes`);
    return false;
  }

  /** The whole file was a header without a line break (or nothing). */
  async end(): Promise<void> {
    if (this.checked) return;
    await checkHeaderLine(Buffer.concat(this.parts, this.length));
    this.checked = true;
  }
}

async function checkHeaderLine(line: Buffer) {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  for await (const _ of csvRecords(
    (async function* () {
      yield line;
      yield Buffer.from("\n");
    })(),
    CSV_COLUMNS,
  ));
}

/** One CSV record (column → text) as the input checkProductRow takes, or why its attributes cell is unreadable. */
export function productFromCsv(record: Record<string, string>, row: number): { input?: Record<string, unknown>; error?: RowError } {
  const input: Record<string, unknown> = { sku: record.sku, name: record.name, serial: record.serial, gtin: record.gtin, lot: record.lot };
  const a = record.attributes;
  if (a !== undefined && a.trim() !== "") {
    try {
      input.attributes = JSON.parse(a);
    } catch {
      return { error: { row, field: "attributes", message: "attributes is not valid JSON" } };
    }
  }
  return { input };
}

/**
 * Checks a batch row by row as it streams in (JSON array or CSV): counts rows, keeps the first
 * MAX_ROW_ERRORS errors, finds serials repeated within the batch. Memory: one entry per serial.
 */
export class BatchChecker {
  readonly errors: RowError[] = [];
  errorCount = 0;
  count = 0;
  private readonly serials: SerialSet | null;

  /**
   * `serials: false` leaves repeated serials to the database's unique index (a big file then
   * needs no memory per row; the rows are named after the index refuses the batch).
   */
  constructor(opts: { serials?: boolean } = {}) {
    this.serials = opts.serials === false ? null : new SerialSet();
  }

  /** The normalised product, or null when the row is wrong (its errors recorded). */
  check(input: unknown, row: number): Required<ProductInput> | null {
    const r = checkProductRow(input, row);
    let rowErrors = r.errors;
    if (r.product && this.serials) {
      const dup = this.serials.add(r.product, row);
      if (dup) rowErrors = [dup];
    }
    if (rowErrors.length) {
      this.fail(...rowErrors);
      return null;
    }
    this.count++;
    return r.product!;
  }

  fail(...errors: RowError[]) {
    this.errorCount += errors.length;
    for (const e of errors) if (this.errors.length < MAX_ROW_ERRORS) this.errors.push(e);
  }

  get ok(): boolean {
    return this.errorCount === 0;
  }
}

// ---- Market regions --------------------------------------------------------------------------

/** `market_regions` as JSON (array) or as a query parameter ("BR,PT" or repeated): upper-cased, unique. */
export function marketRegionsOf(v: unknown): string[] {
  if (v === undefined || v === null || v === "") return [];
  const list = Array.isArray(v) ? v : String(v).split(",");
  return [...new Set(list.map((r) => String(r).trim().toUpperCase()).filter(Boolean))];
}

// ---- PostgreSQL COPY (text format) -----------------------------------------------------------

/** A field in COPY's text format: backslash, tab, newline and carriage return escaped; null is \N. */
export function copyField(v: string | null | undefined): string {
  if (v === null || v === undefined) return "\\N";
  return /[\\\t\n\r]/.test(v) ? v.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r")) : v;
}

/** A batch refused for its rows: the first MAX_ROW_ERRORS errors and how many there were. */
export class RowsError extends Error {
  constructor(
    readonly errors: RowError[],
    readonly errorCount = errors.length,
  ) {
    super(`${errorCount} product row(s) are invalid; nothing was registered`);
    this.name = "RowsError";
  }
}
