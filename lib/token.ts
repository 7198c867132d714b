// Tag tokens: `<kid>.<base64url(tag uuid)>.<base64url(HMAC-SHA256 truncated to 16 bytes)>`.
// Printed in QR/NFC tags and URLs, so they are short (≤ 54 chars) and URL-safe. The key id lets the
// signing key rotate while tags already printed with an older key keep verifying.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export type TokenKeyring = { active: string; keys: Record<string, Buffer> };

export type VerifyResult =
  | { ok: true; tagId: string; kid: string }
  | { ok: false; reason: "malformed" | "unknown_key" | "bad_signature" };

const KID_RE = /^[a-z0-9]{1,8}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// 16 bytes → 22 base64url characters without padding.
const TOKEN_RE = /^([a-z0-9]{1,8})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$/;
const MAX_TOKEN_LENGTH = 100;
const MIN_SECRET_BYTES = 32;
const MAC_BYTES = 16;
// Domain separation: a MAC made for another purpose with the same key can never pass as a token.
const MAC_CONTEXT = "vt1|";

export function generateTokenKey(): Buffer {
  return randomBytes(32);
}

/** "kid:base64secret,kid2:base64secret" → keyring; the first entry signs, all verify. */
export function parseKeyring(spec: string): TokenKeyring {
  if (typeof spec !== "string" || spec.trim() === "") throw new Error("token keyring: empty specification");
  const keys: Record<string, Buffer> = {};
  let active: string | undefined;
  for (const raw of spec.split(",")) {
    const entry = raw.trim();
    const colon = entry.indexOf(":");
    if (colon < 0) throw new Error("token keyring: entry without ':' (expected kid:base64secret)");
    const kid = entry.slice(0, colon).trim();
    const b64 = entry.slice(colon + 1).trim();
    if (!KID_RE.test(kid)) throw new Error(`token keyring: invalid key id ${JSON.stringify(kid.slice(0, 16))} (1-8 chars [a-z0-9])`);
    if (Object.hasOwn(keys, kid)) throw new Error(`token keyring: duplicate key id ${kid}`);
    // Buffer.from ignores stray characters, so check the alphabet first: a typo must not silently shorten a key.
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(b64)) throw new Error(`token keyring: secret of ${kid} is not base64`);
    const secret = Buffer.from(b64.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (secret.length < MIN_SECRET_BYTES) {
      throw new Error(`token keyring: secret of ${kid} has ${secret.length} bytes, at least ${MIN_SECRET_BYTES} required`);
    }
    keys[kid] = secret;
    active ??= kid;
  }
  return { active: active!, keys };
}

function mac(key: Buffer, kid: string, uuidBytes: Buffer): Buffer {
  return createHmac("sha256", key)
    .update(Buffer.from(MAC_CONTEXT + kid + "|", "utf8"))
    .update(uuidBytes)
    .digest()
    .subarray(0, MAC_BYTES);
}

function uuidToBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ""), "hex");
}

function bytesToUuid(b: Buffer): string {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function lookupKey(ring: TokenKeyring, kid: string): Buffer | undefined {
  // hasOwn: a kid from the wire must never resolve through Object.prototype.
  if (!ring || !ring.keys || !Object.hasOwn(ring.keys, kid)) return undefined;
  const k = ring.keys[kid];
  return Buffer.isBuffer(k) && k.length >= MIN_SECRET_BYTES ? k : undefined;
}

export function signToken(tagId: string, ring: TokenKeyring): string {
  if (typeof tagId !== "string" || !UUID_RE.test(tagId)) throw new TypeError("signToken: tagId must be a UUID");
  const kid = ring?.active;
  if (typeof kid !== "string" || !KID_RE.test(kid)) throw new Error("signToken: keyring has no valid active key id");
  const key = lookupKey(ring, kid);
  if (!key) throw new Error(`signToken: active key ${kid} missing from keyring or shorter than ${MIN_SECRET_BYTES} bytes`);
  const id = uuidToBytes(tagId);
  return `${kid}.${id.toString("base64url")}.${mac(key, kid, id).toString("base64url")}`;
}

// Decode base64url and insist the text is the one canonical spelling of those bytes: the last
// character of 22 carries 4 unused bits, and 16 spellings would otherwise decode alike.
function decodeCanonical(s: string): Buffer | null {
  const b = Buffer.from(s, "base64url");
  return b.length === 16 && b.toString("base64url") === s ? b : null;
}

export function verifyToken(token: string, ring: TokenKeyring): VerifyResult {
  // Cheap checks first: anyone on the internet can send anything here.
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: "malformed" };
  const m = TOKEN_RE.exec(token);
  if (!m) return { ok: false, reason: "malformed" };
  const [, kid, idPart, macPart] = m;
  const id = decodeCanonical(idPart);
  const given = decodeCanonical(macPart);
  if (!id || !given) return { ok: false, reason: "malformed" };
  const key = lookupKey(ring, kid);
  if (!key) return { ok: false, reason: "unknown_key" };
  if (!timingSafeEqual(mac(key, kid, id), given)) return { ok: false, reason: "bad_signature" };
  return { ok: true, tagId: bytesToUuid(id), kid };
}
