// Product rows as a manufacturer sends them (JSON or CSV): the checks every row must pass before a
// batch is registered. Pure, so the JSON path, the CSV stream and the tests share one definition.
import { isValidGtin, toGtin14, isGs1AiValue } from "./gs1";

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
  const products: Required<ProductInput>[] = [];
  const errors: RowError[] = [];
  let errorCount = 0;
  const serials = new SerialSet();
  rows.forEach((input, i) => {
    const r = checkProductRow(input, i + 1);
    let rowErrors = r.errors;
    if (r.product) {
      const dup = serials.add(r.product, i + 1);
      if (dup) rowErrors = [dup];
      else products.push(r.product);
    }
    errorCount += rowErrors.length;
    for (const e of rowErrors) if (errors.length < MAX_ROW_ERRORS) errors.push(e);
  });
  return { products, errors, errorCount };
}
