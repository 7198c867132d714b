// Tenant API keys: `vk_<env>_<prefix>_<secret>`. The prefix is the lookup key (stored in clear and
// shown in lists); only the SHA-256 of the whole key is stored. A slow hash is unnecessary: the secret
// carries ≥ 192 random bits, so the hash cannot be brute-forced, and lookups stay cheap per request.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const API_SCOPES = [
  "batches:read",
  "batches:write",
  "products:write",
  "keys:read",
  "keys:write",
  "webhooks:read",
  "webhooks:write",
  "scans:read",
  "anchors:write",
  "recalls:write",
] as const;
export type ApiScope = (typeof API_SCOPES)[number];

const ENV_RE = /^[a-z]{2,8}$/;
// Secret alphabet: base62 when we generate; base64url also accepted so keys from other generators parse.
const KEY_RE = /^vk_([a-z]{2,8})_([a-z0-9]{8})_([A-Za-z0-9_-]{32,128})$/;
const MAX_KEY_LENGTH = 3 + 8 + 1 + 8 + 1 + 128;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_LENGTH = 43; // 43 base62 chars ≈ 256 bits
const HEX64_RE = /^[0-9a-f]{64}$/;

// Uniform characters from random bytes: rejection sampling avoids the modulo bias of `byte % n`.
function randomString(alphabet: string, length: number): string {
  const limit = 256 - (256 % alphabet.length);
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < limit) out += alphabet[b % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

export function generateApiKey(env: string = "live"): { key: string; prefix: string; hash: string } {
  if (typeof env !== "string" || !ENV_RE.test(env)) throw new RangeError("generateApiKey: env must be 2-8 lowercase letters");
  const prefix = randomString(PREFIX_ALPHABET, 8);
  const key = `vk_${env}_${prefix}_${randomString(BASE62, SECRET_LENGTH)}`;
  return { key, prefix, hash: hashApiKey(key) };
}

export function parseApiKey(key: string): { env: string; prefix: string; secret: string } | null {
  if (typeof key !== "string" || key.length > MAX_KEY_LENGTH) return null;
  const m = KEY_RE.exec(key);
  return m ? { env: m[1], prefix: m[2], secret: m[3] } : null;
}

/** Constant-time comparison of the key's hash with the stored hex hash. */
export function verifyApiKey(key: string, storedHash: string): boolean {
  if (!parseApiKey(key) || typeof storedHash !== "string" || !HEX64_RE.test(storedHash)) return false;
  return timingSafeEqual(Buffer.from(hashApiKey(key), "hex"), Buffer.from(storedHash, "hex"));
}

export function isKnownScope(s: string): s is ApiScope {
  return (API_SCOPES as readonly string[]).includes(s);
}

/** Entries that are neither a known scope nor "*" (to reject a request that names them). */
export function unknownScopes(scopes: readonly string[]): string[] {
  return scopes.filter((s) => s !== "*" && !isKnownScope(s));
}

/** Does a credential granted `granted` hold `required`? "*" grants everything. */
export function scopesAllow(granted: readonly string[], required: string): boolean {
  if (!Array.isArray(granted) || typeof required !== "string") return false;
  return granted.includes("*") || (required !== "*" && granted.includes(required));
}

/** A key may mint keys only within its own scopes: every requested scope must be allowed by `granted`. */
export function isSubset(requested: readonly string[], granted: readonly string[]): boolean {
  if (!Array.isArray(requested) || !Array.isArray(granted)) return false;
  return requested.every((r) => scopesAllow(granted, r));
}
