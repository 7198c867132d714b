// GTINs and GS1 Digital Link URIs (GS1 General Specifications §7.9 check digits; GS1 Digital Link
// URI syntax). Pure string work: the gateway routes `/01/:gtin/...` here and the factory builds the
// `digital_link` printed next to the VokeTag token.

export type DigitalLinkParts = { gtin: string; lot?: string; serial?: string; token?: string };

const GTIN_LENGTHS = new Set([8, 12, 13, 14]);
// GS1 AI encodable character set 82, which AI (10) lot and AI (21) serial are restricted to, max 20.
const CSET82_RE = /^[\x21\x22\x25-\x3F\x41-\x5A\x5F\x61-\x7A]+$/;
const AI_VALUE_MAX = 20;
const MAX_PATH_LENGTH = 2048;
const MAX_TOKEN_LENGTH = 200;

/** Mod-10 check digit of a GS1 key body (the digits before the check digit). */
export function gtinCheckDigit(body: string): number {
  if (typeof body !== "string" || !/^\d{1,17}$/.test(body)) throw new RangeError("gtinCheckDigit: body must be 1-17 digits");
  let sum = 0;
  // Weights alternate 3,1,3,… starting from the digit nearest the check digit.
  for (let i = body.length - 1, w = 3; i >= 0; i--, w = 4 - w) sum += (body.charCodeAt(i) - 48) * w;
  return (10 - (sum % 10)) % 10;
}

export function isValidGtin(s: string): boolean {
  if (typeof s !== "string" || !GTIN_LENGTHS.has(s.length) || !/^\d+$/.test(s)) return false;
  return gtinCheckDigit(s.slice(0, -1)) === s.charCodeAt(s.length - 1) - 48;
}

/** GTIN-8/12/13/14 → GTIN-14 (zero-padded; the check digit is unchanged by leading zeros). */
export function toGtin14(s: string): string {
  if (!isValidGtin(s)) throw new RangeError("toGtin14: not a valid GTIN-8/12/13/14");
  return s.padStart(14, "0");
}

/** True when `s` may be the value of AI (10) lot or AI (21) serial: 1-20 chars of GS1 CSET 82. */
export function isGs1AiValue(s: string): boolean {
  return typeof s === "string" && s.length >= 1 && s.length <= AI_VALUE_MAX && CSET82_RE.test(s);
}

// GS1 Digital Link percent-encodes every character outside RFC 3986 "unreserved" (A-Z a-z 0-9 - . _ ~),
// uppercase hex, as GS1's own syntax engine does. encodeURIComponent leaves ! ' ( ) * alone, so finish them.
function encodeAiValue(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

function decodeAiValue(s: string): string | null {
  try {
    const v = decodeURIComponent(s);
    return isGs1AiValue(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * `{base}/01/{gtin14}[/10/{lot}][/21/{serial}][?vt={token}]`. Throws RangeError on an invalid GTIN or
 * a lot/serial that GS1 does not allow (callers validate input with isValidGtin / isGs1AiValue first).
 */
export function buildDigitalLink(base: string, p: { gtin: string; lot?: string | null; serial?: string | null; token?: string }): string {
  if (typeof base !== "string" || !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/i.test(base)) throw new RangeError("buildDigitalLink: base must be an http(s) URL without query");
  let uri = base.replace(/\/+$/, "") + "/01/" + toGtin14(p.gtin);
  for (const [ai, value, name] of [["10", p.lot, "lot"], ["21", p.serial, "serial"]] as const) {
    if (value === undefined || value === null || value === "") continue;
    if (!isGs1AiValue(value)) throw new RangeError(`buildDigitalLink: ${name} must be 1-${AI_VALUE_MAX} characters of GS1 CSET 82`);
    uri += `/${ai}/${encodeAiValue(value)}`;
  }
  if (p.token !== undefined && p.token !== "") uri += "?vt=" + encodeURIComponent(p.token);
  return uri;
}

/**
 * Parses the path (and query) the gateway sees, e.g. "/01/09506000134352/10/ABC/21/123?vt=…".
 * Accepts GTIN-8/12/13 as well (normalised to 14 digits) and key qualifiers in the standard order
 * (10 before 21); ignores other query parameters; returns null for anything else.
 */
export function parseDigitalLinkPath(pathAndQuery: string): DigitalLinkParts | null {
  if (typeof pathAndQuery !== "string" || pathAndQuery.length > MAX_PATH_LENGTH) return null;
  const hash = pathAndQuery.indexOf("#");
  const noFragment = hash >= 0 ? pathAndQuery.slice(0, hash) : pathAndQuery;
  const q = noFragment.indexOf("?");
  let path = q >= 0 ? noFragment.slice(0, q) : noFragment;
  const query = q >= 0 ? noFragment.slice(q + 1) : "";
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);

  const seg = path.split("/");
  // "" (leading slash), "01", gtin, then AI/value pairs.
  if (seg[0] !== "" || seg[1] !== "01" || seg.length < 3 || seg.length % 2 !== 1) return null;
  const gtin = seg[2];
  if (!isValidGtin(gtin)) return null;
  const out: DigitalLinkParts = { gtin: gtin.padStart(14, "0") };

  const order = ["10", "21"];
  let next = 0;
  for (let i = 3; i < seg.length; i += 2) {
    const ai = seg[i];
    const at = order.indexOf(ai, next);
    if (at < 0) return null; // unknown, repeated or out-of-order qualifier
    next = at + 1;
    const value = decodeAiValue(seg[i + 1]);
    if (value === null) return null;
    if (ai === "10") out.lot = value;
    else out.serial = value;
  }

  if (query) {
    let token: string | undefined;
    for (const pair of query.split("&")) {
      const eq = pair.indexOf("=");
      if ((eq >= 0 ? pair.slice(0, eq) : pair) !== "vt") continue;
      if (token !== undefined) return null; // two tokens: ambiguous, refuse
      let v: string;
      try {
        v = decodeURIComponent(eq >= 0 ? pair.slice(eq + 1) : "");
      } catch {
        return null;
      }
      if (v.length === 0 || v.length > MAX_TOKEN_LENGTH) return null;
      token = v;
    }
    if (token !== undefined) out.token = token;
  }
  return out;
}
