// Device and network identity for the risk model and rate limits, without keeping raw IPs: an
// address is reduced to its network (IPv4 /24, IPv6 /48, roughly one household or small office)
// before it is hashed, so a stored fingerprint cannot be turned back into a consumer's address.
import { createHash, createHmac } from "node:crypto";
import { isIP } from "node:net";
import { canonicalBytes } from "./canonical";

interface ParsedIp {
  family: 4 | 6;
  value: bigint;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n; // ::ffff:0:0/96

function parseV4(s: string): bigint | null {
  if (isIP(s) !== 4) return null; // node rejects leading zeros, which some parsers read as octal
  return s.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}

function parseV6(s: string): bigint | null {
  if (isIP(s) !== 6) return null;
  let text = s.toLowerCase();
  // A dotted-quad tail (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = parseV4(dotted[2]);
    if (v4 === null) return null;
    text = `${dotted[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  const groups = halves.length > 1 ? [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail] : head;
  if (groups.length !== 8) return null;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/**
 * Parses an address as found in sockets and headers: surrounding spaces, [brackets], an IPv6
 * zone (%eth0) and a port ("1.2.3.4:80", "[::1]:80") are tolerated. IPv4-mapped IPv6 is IPv4.
 */
function parseIp(input: unknown): ParsedIp | null {
  if (typeof input !== "string") return null;
  let s = input.trim();
  if (!s || s.length > 100) return null;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(s);
  if (bracketed) s = bracketed[1];
  else if (/^\d+\.\d+\.\d+\.\d+:\d{1,5}$/.test(s)) s = s.slice(0, s.lastIndexOf(":"));
  s = s.replace(/%[0-9a-z_.-]+$/i, "");
  const v4 = parseV4(s);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseV6(s);
  if (v6 === null) return null;
  if (v6 >> 32n === V4_MAPPED_PREFIX >> 32n) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

function formatV4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((sh) => String((v >> sh) & 0xffn)).join(".");
}

// RFC 5952: lower case, no leading zeros, the longest run (first on ties) of 2+ zero groups as "::".
function formatV6(v: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

function formatIp(p: ParsedIp): string {
  return p.family === 4 ? formatV4(p.value) : formatV6(p.value);
}

/** Canonical text of an address (IPv4-mapped as IPv4, IPv6 per RFC 5952), or null when invalid. */
export function normalizeIp(ip: unknown): string | null {
  const p = parseIp(ip);
  return p ? formatIp(p) : null;
}

/** "203.0.113.57" -> "203.0.113.0/24"; "2001:db8:1:2::5" -> "2001:db8:1::/48"; invalid -> "unknown". */
export function networkPrefix(ip: string): string {
  const p = parseIp(ip);
  if (!p) return "unknown";
  if (p.family === 4) return `${formatV4(p.value & 0xffffff00n)}/24`;
  const mask48 = ((1n << 48n) - 1n) << 80n;
  return `${formatV6(p.value & mask48)}/48`;
}

export interface FingerprintInput {
  userAgent?: string | null;
  acceptLanguage?: string | null;
  /** The scan request's optional `fingerprint` field, computed by the consumer page. */
  clientFingerprint?: string | null;
  ip?: string | null;
}

const text = (v: unknown): string | null => (typeof v === "string" && v.trim() !== "" ? v.trim() : null);

/**
 * hex SHA-256 over the canonical JSON of { v, ua, lang, client, net }. The network prefix stands
 * in for the IP, so the same phone moving within its /24 keeps its fingerprint and the raw
 * address never enters the hash. `v` lets a future scheme coexist with stored fingerprints.
 */
export function deviceFingerprint(input: FingerprintInput): string {
  const form = {
    v: 1,
    ua: text(input.userAgent),
    // Header spacing and case vary between otherwise identical requests.
    lang: text(input.acceptLanguage)?.toLowerCase().replace(/\s+/g, "") ?? null,
    client: text(input.clientFingerprint),
    net: networkPrefix(input.ip ?? ""),
  };
  return createHash("sha256").update(canonicalBytes(form)).digest("hex");
}

/**
 * Hex key for a client's network (its /24 or /48), for rate limits and the audit log. Pass a
 * secret in production: there are only 2^24 IPv4 /24s, so an unkeyed hash is trivially reversed.
 */
export function hashNetwork(ip: string, secret?: string | Buffer): string {
  const data = `voketag:network:v1:${networkPrefix(ip)}`;
  if (secret !== undefined && secret.length > 0) return createHmac("sha256", secret).update(data).digest("hex");
  return createHash("sha256").update(data).digest("hex");
}

interface Cidr {
  family: 4 | 6;
  base: bigint;
  bits: number;
}

function parseCidr(c: string): Cidr {
  const [addr, len, ...rest] = String(c).trim().split("/");
  const p = rest.length === 0 ? parseIp(addr) : null;
  if (!p) throw new Error(`invalid CIDR ${JSON.stringify(c)}`);
  // A mapped IPv6 CIDR (::ffff:10.0.0.0/104) is stored as its IPv4 equivalent.
  const mapped = p.family === 4 && addr.includes(":");
  const width = p.family === 4 ? 32 : 128;
  let bits = len === undefined ? width : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (mapped && len !== undefined) bits -= 96;
  if (!Number.isInteger(bits) || bits < 0 || bits > width) throw new Error(`invalid CIDR ${JSON.stringify(c)}`);
  const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(width - bits);
  return { family: p.family, base: p.value & mask, bits };
}

function inCidr(p: ParsedIp, c: Cidr): boolean {
  if (p.family !== c.family) return false;
  const width = c.family === 4 ? 32 : 128;
  const mask = c.bits === 0 ? 0n : ((1n << BigInt(c.bits)) - 1n) << BigInt(width - c.bits);
  return (p.value & mask) === c.base;
}

// Trusted lists come from configuration and are reused per request: compile each array once.
const compiled = new WeakMap<readonly string[], Cidr[]>();
function compile(cidrs: readonly string[]): Cidr[] {
  let out = compiled.get(cidrs);
  if (!out) {
    out = cidrs.map(parseCidr);
    compiled.set(cidrs, out);
  }
  return out;
}

/** Throws an Error naming the first invalid entry; use at startup to reject a bad TRUST_PROXY. */
export function validateCidrs(cidrs: readonly string[]): void {
  for (const c of cidrs) parseCidr(c);
}

/** Whether ip lies in any of the CIDRs ("10.0.0.0/8", "2001:db8::/32", or a bare address). */
export function ipInCidrs(ip: string, cidrs: readonly string[]): boolean {
  const p = parseIp(ip);
  return p !== null && compile(cidrs).some((c) => inCidr(p, c));
}

/**
 * The client's address. Only a request whose socket peer is a trusted proxy may speak for the
 * client through X-Forwarded-For; then the answer is the right-most entry that is not itself a
 * trusted proxy (each proxy appends the peer it saw, so entries left of it may be client-forged).
 * An unparsable entry ends the walk at the last trusted hop. If every entry is trusted, the
 * left-most one. Returns the canonical address, or "unknown" when the socket address is invalid.
 */
export function clientIp(socketAddress: string | null | undefined, xForwardedFor: string | string[] | null | undefined, trustedCidrs: readonly string[]): string {
  const socket = parseIp(socketAddress);
  if (!socket) return "unknown";
  const cidrs = compile(trustedCidrs);
  const trusted = (p: ParsedIp): boolean => cidrs.some((c) => inCidr(p, c));
  if (!trusted(socket) || xForwardedFor == null) return formatIp(socket);
  // Repeated headers are one list in arrival order (RFC 9110 section 5.3).
  const hops = (Array.isArray(xForwardedFor) ? xForwardedFor.join(",") : xForwardedFor).split(",").map((h) => h.trim()).filter((h) => h !== "");
  let answer = socket;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = parseIp(hops[i]);
    if (!hop) break;
    answer = hop;
    if (!trusted(hop)) break;
  }
  return formatIp(answer);
}
