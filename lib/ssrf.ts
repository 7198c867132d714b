// Where a webhook may be sent: address classification and URL checks, pure (no DNS, no I/O).
// Callers resolve a host once, check every address with checkResolved, then connect to the
// address that passed (lib/webhook-http), so a DNS answer cannot change between check and use.

export type AddressKind =
  | "public"
  | "loopback"
  | "private"
  | "cgnat"
  | "link-local"
  | "metadata"
  | "multicast"
  | "unspecified"
  | "broadcast"
  | "reserved";

export interface Classified {
  kind: AddressKind;
  /** The address in canonical text form (IPv4 dotted quad, IPv6 compressed lowercase). */
  address: string;
  family: 4 | 6;
}

export interface UrlPolicy {
  /** WEBHOOKS_ALLOW_PRIVATE=1: admit loopback and private (RFC 1918, IPv6 ULA) addresses. */
  allowPrivate: boolean;
  /** Production: only https. */
  requireHttps: boolean;
}

// Cloud metadata services: refused always, whatever the flag (they hand out credentials).
const METADATA_V4 = new Set(["169.254.169.254", "169.254.170.2", "169.254.169.253", "100.100.100.200", "192.0.0.192"]);
const METADATA_V6 = new Set(["fd00:ec2::254", "fd00:ec2::253"]);
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal", "metadata.azure.com"]);

const ALLOWED_PORTS_BELOW_1024 = new Set([80, 443]);
export const MAX_URL_LENGTH = 2048;

// ---- IPv4 ------------------------------------------------------------------------------------

/** Strict dotted quad (what DNS answers and URL hosts look like once canonicalised). */
export function parseIPv4(s: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p, i) => p > 255 || (m[i + 1].length > 1 && m[i + 1][0] === "0"))) return null;
  return parts;
}

/**
 * inet_aton's spellings: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x), the last part
 * filling the remaining bytes ("127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1"). Resolvers and
 * HTTP clients accept these, so a check must too.
 */
export function parseIPv4Loose(s: string): number[] | null {
  if (!s || s.length > 64) return null;
  const raw = s.endsWith(".") ? s.slice(0, -1) : s;
  const parts = raw.split(".");
  if (parts.length < 1 || parts.length > 4) return null;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = p.length === 1 ? 0 : parseInt(p.slice(1), 8);
    else if (/^[1-9]\d*$/.test(p)) n = Number(p);
    else return null;
    if (!Number.isFinite(n)) return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255)) return null;
  const restBytes = 4 - nums.length;
  if (last >= 2 ** (8 * restBytes)) return null;
  const out = [...nums];
  for (let i = restBytes - 1; i >= 0; i--) out.push(Math.floor(last / 2 ** (8 * i)) % 256);
  return out;
}

function inV4(a: number[], base: number[], bits: number): boolean {
  const ai = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0;
  const bi = ((base[0] << 24) | (base[1] << 16) | (base[2] << 8) | base[3]) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (ai & mask) === (bi & mask);
}

export function classifyIPv4(a: number[]): AddressKind {
  const text = a.join(".");
  if (METADATA_V4.has(text)) return "metadata";
  if (text === "255.255.255.255") return "broadcast";
  const table: [number[], number, AddressKind][] = [
    [[0, 0, 0, 0], 8, "unspecified"],
    [[10, 0, 0, 0], 8, "private"],
    [[100, 64, 0, 0], 10, "cgnat"],
    [[127, 0, 0, 0], 8, "loopback"],
    [[169, 254, 0, 0], 16, "link-local"],
    [[172, 16, 0, 0], 12, "private"],
    [[192, 0, 0, 0], 24, "reserved"], // IETF protocol assignments
    [[192, 0, 2, 0], 24, "reserved"], // documentation
    [[192, 88, 99, 0], 24, "reserved"], // 6to4 relay anycast
    [[192, 168, 0, 0], 16, "private"],
    [[198, 18, 0, 0], 15, "reserved"], // benchmarking
    [[198, 51, 100, 0], 24, "reserved"],
    [[203, 0, 113, 0], 24, "reserved"],
    [[224, 0, 0, 0], 4, "multicast"],
    [[240, 0, 0, 0], 4, "reserved"],
  ];
  for (const [base, bits, kind] of table) if (inV4(a, base, bits)) return kind;
  return "public";
}

// ---- IPv6 ------------------------------------------------------------------------------------

/** 16 bytes, or null. Accepts "::" compression, an embedded dotted quad and strips a zone id. */
export function parseIPv6(input: string): number[] | null {
  let s = input.trim().toLowerCase();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(":") || !/^[0-9a-f:.]+$/.test(s)) return null;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  const lastPart = s.slice(lastColon + 1);
  if (lastPart.includes(".")) {
    const v4 = parseIPv4(lastPart);
    if (!v4) return null;
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    s = s.slice(0, lastColon + 1) + "0:0"; // placeholder groups, replaced below
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parseGroups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = parseGroups(halves[0]);
  const rest = halves.length === 2 ? parseGroups(halves[1]) : [];
  if ([...head, ...rest].some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - rest.length;
    if (missing < 1) return null;
    groups = [...head.map((g) => parseInt(g, 16)), ...new Array(missing).fill(0), ...rest.map((g) => parseInt(g, 16))];
  } else {
    if (head.length !== 8) return null;
    groups = head.map((g) => parseInt(g, 16));
  }
  if (tail.length) groups.splice(6, 2, ...tail);
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return bytes;
}

function formatIPv6(b: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // Longest run of zero groups (length >= 2) becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

const prefixIs = (b: number[], p: number[]) => p.every((v, i) => b[i] === v);
function inV6(b: number[], base: number[], bits: number): boolean {
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((b[i] & mask) !== ((base[i] ?? 0) & mask)) return false;
  }
  return true;
}

export function classifyIPv6(b: number[]): AddressKind {
  const text = formatIPv6(b);
  if (METADATA_V6.has(text)) return "metadata";
  if (b.every((x) => x === 0)) return "unspecified";
  if (b.slice(0, 15).every((x) => x === 0) && b[15] === 1) return "loopback";
  // Addresses that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d), the
  // deprecated compatible form (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002:aabb:ccdd::/48).
  if (prefixIs(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])) return classifyIPv4(b.slice(12));
  if (prefixIs(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])) return classifyIPv4(b.slice(12));
  if (prefixIs(b, [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])) return classifyIPv4(b.slice(12));
  if (b[0] === 0x20 && b[1] === 0x02) return classifyIPv4(b.slice(2, 6));
  if (inV6(b, [0xfe, 0x80], 10)) return "link-local";
  if (inV6(b, [0xfe, 0xc0], 10)) return "reserved"; // site-local, deprecated
  if (inV6(b, [0xfc], 7)) return "private"; // unique local addresses
  if (b[0] === 0xff) return "multicast";
  if (inV6(b, [0x20, 0x01, 0x0d, 0xb8], 32)) return "reserved"; // documentation
  if (inV6(b, [0x01, 0x00, 0, 0, 0, 0, 0, 0], 64)) return "reserved"; // discard-only
  if (inV6(b, [0x20, 0x01, 0, 0], 32)) return "reserved"; // Teredo: the embedded IPv4 is obfuscated
  if (inV6(b, [0x20, 0x01, 0x00], 23)) return "reserved"; // IETF protocol assignments
  // Only global unicast (2000::/3) is routable on the Internet.
  if ((b[0] & 0xe0) !== 0x20) return "reserved";
  return "public";
}

/** Classifies an IP address given as text (IPv4 in any inet_aton spelling, or IPv6); null if it is none. */
export function classifyAddress(ip: string): Classified | null {
  const v4 = parseIPv4Loose(ip);
  if (v4) return { kind: classifyIPv4(v4), address: v4.join("."), family: 4 };
  const v6 = parseIPv6(ip);
  if (v6) return { kind: classifyIPv6(v6), address: formatIPv6(v6), family: 6 };
  return null;
}

/** Whether an address of this kind may receive webhooks under the policy. */
export function kindAllowed(kind: AddressKind, policy: Pick<UrlPolicy, "allowPrivate">): boolean {
  if (kind === "public") return true;
  // Link-local and metadata stay refused even with the flag: that is where cloud credentials live.
  return policy.allowPrivate && (kind === "loopback" || kind === "private");
}

function describe(kind: AddressKind): string {
  switch (kind) {
    case "loopback": return "a loopback address";
    case "private": return "a private-network address";
    case "cgnat": return "a carrier-grade NAT (100.64.0.0/10) address";
    case "link-local": return "a link-local address";
    case "metadata": return "a cloud metadata address";
    case "multicast": return "a multicast address";
    case "unspecified": return "an unspecified address";
    case "broadcast": return "the broadcast address";
    case "reserved": return "a reserved address";
    default: return "a public address";
  }
}

// ---- URLs ------------------------------------------------------------------------------------

export type UrlCheck =
  | { ok: true; url: URL; hostname: string; port: number; https: boolean; /** set when the host is an IP literal */ ip: Classified | null }
  | { ok: false; reason: string };

/**
 * Checks a webhook URL before any DNS: scheme, credentials, port, and the host when it is an IP
 * literal or a name reserved for loopback or metadata. Names are checked again after resolving.
 */
export function checkWebhookUrl(raw: string, policy: UrlPolicy): UrlCheck {
  if (typeof raw !== "string" || !raw) return { ok: false, reason: "url is required" };
  if (raw.length > MAX_URL_LENGTH) return { ok: false, reason: `url is longer than ${MAX_URL_LENGTH} characters` };
  // Control characters and backslashes are parsed differently by different URL parsers.
  if (/[\u0000-\u001f\u007f\\\s]/.test(raw)) return { ok: false, reason: "url contains whitespace, control characters or backslashes" };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: "url is not a valid absolute URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return { ok: false, reason: "url must be http or https" };
  if (policy.requireHttps && url.protocol !== "https:") return { ok: false, reason: "url must use https" };
  // userinfo is where "http://trusted.example@10.0.0.1/" tricks live, and we would send it nowhere anyway.
  if (url.username || url.password || /^[a-z]+:\/\/[^/?#]*@/i.test(raw)) return { ok: false, reason: "url must not contain credentials (user:password@)" };
  const https = url.protocol === "https:";
  const port = url.port ? Number(url.port) : https ? 443 : 80;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return { ok: false, reason: "url has an invalid port" };
  if (port < 1024 && !ALLOWED_PORTS_BELOW_1024.has(port)) return { ok: false, reason: `port ${port} is not allowed (use 80, 443 or a port from 1024 up)` };
  let host = url.hostname.toLowerCase();
  if (!host) return { ok: false, reason: "url has no host" };
  if (host.startsWith("[")) host = host.slice(1, -1);
  const bare = host.endsWith(".") ? host.slice(0, -1) : host;
  if (METADATA_HOSTS.has(bare)) return { ok: false, reason: `url host ${bare} is a cloud metadata service` };
  const ip = classifyAddress(host);
  if (ip) {
    if (!kindAllowed(ip.kind, policy)) return { ok: false, reason: refusal(ip) };
    return { ok: true, url, hostname: ip.address, port, https, ip };
  }
  // RFC 6761: localhost names always mean loopback, whatever a resolver says.
  if (bare === "localhost" || bare.endsWith(".localhost")) {
    if (!kindAllowed("loopback", policy)) return { ok: false, reason: `url host ${bare} is a loopback name` };
  }
  if (!/^[a-z0-9._-]+$/.test(bare) || bare.split(".").some((l) => l.length === 0 || l.length > 63))
    return { ok: false, reason: "url host is not a valid host name" };
  return { ok: true, url, hostname: bare, port, https, ip: null };
}

function refusal(c: Classified): string {
  const hint = c.kind === "loopback" || c.kind === "private" ? " (WEBHOOKS_ALLOW_PRIVATE=1 admits it on private networks)" : "";
  return `url resolves to ${describe(c.kind)} (${c.address}), which cannot receive webhooks${hint}`;
}

export type ResolvedCheck = { ok: true; address: string; family: 4 | 6 } | { ok: false; reason: string };

/**
 * Checks every address a host resolved to; all must pass (a name answering one public and one
 * private address is refused), and the first is the one to connect to.
 */
export function checkResolved(hostname: string, addresses: string[], policy: Pick<UrlPolicy, "allowPrivate">): ResolvedCheck {
  if (!addresses.length) return { ok: false, reason: `${hostname} did not resolve to any address` };
  const classified: Classified[] = [];
  for (const a of addresses) {
    const c = classifyAddress(a);
    if (!c) return { ok: false, reason: `${hostname} resolved to something that is not an IP address` };
    if (!kindAllowed(c.kind, policy)) return { ok: false, reason: refusal(c).replace("url resolves", `${hostname} resolves`) };
    classified.push(c);
  }
  return { ok: true, address: classified[0].address, family: classified[0].family };
}
