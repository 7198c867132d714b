// Streaming RFC 4180 CSV for product files of any size: one record is held at a time, and every field
// is bounded, so an unterminated quote cannot make us buffer the rest of the file.

export class CsvError extends Error {
  readonly row: number;
  constructor(row: number, message: string) {
    super(`CSV row ${row}: ${message}`);
    this.name = "CsvError";
    this.row = row;
  }
}

export type CsvOptions = { maxFieldBytes?: number; maxColumns?: number };
export type CsvRow = { row: number; fields: string[] };

export const CSV_DEFAULT_MAX_FIELD_BYTES = 64 * 1024;
export const CSV_DEFAULT_MAX_COLUMNS = 256;

const QUOTE = 34; // "
const COMMA = 44; // ,
const CR = 13;
const LF = 10;

// Parser states (plain constants: const enums do not survive per-file transpilers).
const FIELD_START = 0; // at the start of a field
const UNQUOTED = 1; // inside an unquoted field
const QUOTED = 2; // inside a quoted field
const QUOTE_IN_QUOTED = 3; // just read a quote inside a quoted field: escaped quote or closing quote

// UTF-8 size of a string without allocating a Buffer; a surrogate pair counts 2 + 2 = 4 bytes.
function utf8Bytes(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3;
  }
  return n;
}

// Length of `buf` without a trailing UTF-8 sequence that may still be completed by the next chunk.
function completeLength(buf: Buffer): number {
  for (let i = buf.length - 1; i >= 0 && i >= buf.length - 3; i--) {
    const b = buf[i];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back for the lead byte
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return buf.length - i < need ? i : buf.length;
  }
  return buf.length;
}

// Longest prefix of `bytes` holding no invalid UTF-8 (binary search; only on the error path).
// A prefix ending mid-character is fine in streaming mode, so validity is monotonic in the length.
function validPrefixLength(bytes: Buffer): number {
  const ok = (k: number) => {
    try {
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(0, k), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  // Back off to a character boundary so the decode below cannot throw on a partial character.
  return completeLength(bytes.subarray(0, lo));
}

/**
 * Yields each record with the 1-based line number where it starts (the header is row 1). Blank lines are
 * skipped (but counted). CRLF, LF and lone CR all end a record. Input must be UTF-8; a leading BOM is dropped.
 */
export async function* parseCsv(input: AsyncIterable<Buffer | string>, opts: CsvOptions = {}): AsyncGenerator<CsvRow> {
  const maxFieldBytes = opts.maxFieldBytes ?? CSV_DEFAULT_MAX_FIELD_BYTES;
  const maxColumns = opts.maxColumns ?? CSV_DEFAULT_MAX_COLUMNS;
  // fatal: a Latin-1 file would otherwise turn into U+FFFD silently. ignoreBOM: we strip it ourselves,
  // for string input too.
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  let state = FIELD_START;
  let field = "";
  let fieldBytes = 0;
  let fields: string[] = [];
  let line = 1; // line the parser is on
  let recordRow = 1; // line where the current record started
  let recordStarted = false; // has the current record consumed any character?
  let quoteRow = 1; // line of the quote that opened the current quoted field
  let afterCR = false; // previous character was a CR already counted as a line break
  let first = true;

  const append = (text: string, from: number, to: number) => {
    if (to <= from) return;
    fieldBytes += utf8Bytes(text, from, to);
    if (fieldBytes > maxFieldBytes) throw new CsvError(recordRow, `field ${fields.length + 1} is larger than ${maxFieldBytes} bytes`);
    field += text.slice(from, to);
  };
  const endField = () => {
    if (fields.length >= maxColumns) throw new CsvError(recordRow, `more than ${maxColumns} columns`);
    fields.push(field);
    field = "";
    fieldBytes = 0;
  };
  const takeRecord = (): CsvRow => {
    const r = { row: recordRow, fields };
    fields = [];
    return r;
  };

  function* consume(text: string): Generator<CsvRow> {
    let i = 0;
    const n = text.length;
    if (first && n > 0) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) i = 1;
    }
    while (i < n) {
      const c = text.charCodeAt(i);
      if (afterCR) {
        afterCR = false;
        if (c === LF) {
          // Second half of a CRLF: a line already counted; inside quotes it is still field content.
          if (state === QUOTED) append(text, i, i + 1);
          i++;
          continue;
        }
      }
      switch (state) {
        case FIELD_START:
          if (c === QUOTE) {
            state = QUOTED;
            quoteRow = line;
            recordStarted = true;
            i++;
          } else if (c === COMMA) {
            recordStarted = true;
            endField();
            i++;
          } else if (c === CR || c === LF) {
            if (recordStarted) {
              endField();
              yield takeRecord();
            }
            line++;
            afterCR = c === CR;
            recordStarted = false;
            recordRow = line;
            i++;
          } else {
            state = UNQUOTED;
            recordStarted = true;
          }
          break;
        case UNQUOTED: {
          let j = i;
          for (; j < n; j++) {
            const d = text.charCodeAt(j);
            if (d === COMMA || d === CR || d === LF || d === QUOTE) break;
          }
          append(text, i, j);
          i = j;
          if (j === n) break;
          const d = text.charCodeAt(j);
          if (d === QUOTE) throw new CsvError(line, `quote inside unquoted field ${fields.length + 1} (quote the whole field and double inner quotes)`);
          state = FIELD_START; // the delimiter is handled there
          break;
        }
        case QUOTED: {
          let j = i;
          for (; j < n; j++) {
            const d = text.charCodeAt(j);
            if (d === QUOTE || d === CR || d === LF) break;
          }
          append(text, i, j);
          i = j;
          if (j === n) break;
          const d = text.charCodeAt(j);
          if (d === QUOTE) {
            state = QUOTE_IN_QUOTED;
          } else {
            append(text, j, j + 1);
            line++;
            afterCR = d === CR;
          }
          i++;
          break;
        }
        case QUOTE_IN_QUOTED:
          if (c === QUOTE) {
            append(text, i, i + 1); // "" is an escaped quote
            state = QUOTED;
            i++;
          } else if (c === COMMA || c === CR || c === LF) {
            state = FIELD_START; // closing quote; the delimiter is handled there
          } else {
            throw new CsvError(line, `unexpected character after the closing quote of field ${fields.length + 1}`);
          }
          break;
      }
    }
  }

  // Bytes are decoded statelessly with the incomplete tail carried over by hand, so that on invalid
  // UTF-8 we can still parse up to the bad byte and report the row it is on.
  let carry: Buffer | null = null;
  function* feed(chunk: Buffer, final: boolean): Generator<CsvRow> {
    const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
    const end = final ? buf.length : completeLength(buf);
    carry = end < buf.length ? Buffer.from(buf.subarray(end)) : null; // copy: don't pin the whole chunk
    const bytes = buf.subarray(0, end);
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      yield* consume(decoder.decode(bytes.subarray(0, validPrefixLength(bytes))));
      throw new CsvError(line, "input is not valid UTF-8");
    }
    yield* consume(text);
  }

  for await (const chunk of input) {
    if (typeof chunk === "string") {
      if (carry) yield* feed(Buffer.alloc(0), true); // a Buffer chunk ended mid-character: throws
      yield* consume(chunk);
    } else {
      yield* feed(chunk, false);
    }
  }
  if (carry) yield* feed(Buffer.alloc(0), true);

  if (state === QUOTED) throw new CsvError(quoteRow, `unterminated quoted field ${fields.length + 1}`);
  if (recordStarted) {
    endField();
    yield takeRecord();
  }
}

/**
 * Reads the header, checks it against the expected columns and yields each record keyed by column name.
 * Column names are trimmed; every column must be in `required` or `allowed`; rows must have as many fields
 * as the header; rows whose fields are all empty (trailing ",,," lines from spreadsheets) are skipped.
 */
export async function* csvRecords(
  input: AsyncIterable<Buffer | string>,
  spec: { required: string[]; allowed: string[] },
  opts: CsvOptions = {},
): AsyncGenerator<{ row: number; record: Record<string, string> }> {
  let header: string[] | null = null;
  for await (const { row, fields } of parseCsv(input, opts)) {
    if (!header) {
      header = fields.map((f) => f.trim());
      checkHeader(header, row, spec);
      continue;
    }
    if (fields.every((f) => f === "")) continue;
    if (fields.length !== header.length) throw new CsvError(row, `expected ${header.length} fields, found ${fields.length}`);
    const record: Record<string, string> = Object.create(null);
    for (let i = 0; i < header.length; i++) record[header[i]] = fields[i];
    yield { row, record };
  }
  if (!header) throw new CsvError(1, "empty file: a header row is required");
}

function checkHeader(header: string[], row: number, spec: { required: string[]; allowed: string[] }) {
  const known = new Set([...spec.required, ...spec.allowed]);
  const seen = new Set<string>();
  const show = (names: string[]) => names.map((n) => JSON.stringify(n.length > 64 ? n.slice(0, 64) + "…" : n)).join(", ");
  if (header.some((h) => h === "")) throw new CsvError(row, "empty column name in header");
  const dup = header.filter((h) => (seen.has(h) ? true : (seen.add(h), false)));
  if (dup.length) throw new CsvError(row, `duplicate columns: ${show([...new Set(dup)])}`);
  const missing = spec.required.filter((r) => !seen.has(r));
  if (missing.length) throw new CsvError(row, `missing required columns: ${show(missing)}`);
  const unknown = header.filter((h) => !known.has(h));
  if (unknown.length) throw new CsvError(row, `unknown columns: ${show(unknown)} (allowed: ${show([...known])})`);
}

const NEEDS_QUOTES = /[",\r\n]/;
// Spreadsheets evaluate cells starting with these as formulas (CSV injection).
const FORMULA_START = /^[=+\-@\t\r]/;

/** One CSV line, terminated by CRLF. Strings that a spreadsheet would run as a formula get a leading "'". */
export function toCsvLine(fields: (string | number | null | undefined)[]): string {
  return (
    fields
      .map((f) => {
        // Numbers are ours, not user input: -5 stays a number instead of turning into text.
        if (f === null || f === undefined) return "";
        let s = String(f);
        if (typeof f !== "number" && FORMULA_START.test(s)) s = "'" + s;
        return NEEDS_QUOTES.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      })
      .join(",") + "\r\n"
  );
}
