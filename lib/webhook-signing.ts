// Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
// `${webhook-id}.${webhook-timestamp}.${body}` keyed with the base64 bytes after "whsec_",
// sent as "v1,<base64>"; several signatures are space-separated (secret rotation).
import crypto from "node:crypto";

export const SECRET_PREFIX = "whsec_";
const SECRET_BYTES = 32;

export function generateSecret(): string {
  return SECRET_PREFIX + crypto.randomBytes(SECRET_BYTES).toString("base64");
}

/** The HMAC key of a `whsec_` secret; throws on anything else. */
export function secretKey(secret: string): Buffer {
  if (typeof secret !== "string" || !secret.startsWith(SECRET_PREFIX)) throw new Error("webhook secret must start with whsec_");
  const b64 = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error("webhook secret is not base64 after whsec_");
  const key = Buffer.from(b64, "base64");
  if (key.length < 24 || key.length > 64) throw new Error("webhook secret must carry 24 to 64 bytes");
  return key;
}

/** A message id: unique per event, the same on every retry and replay (receivers dedupe on it). */
export function newMessageId(): string {
  return "msg_" + crypto.randomBytes(16).toString("base64url");
}

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  const mac = crypto.createHmac("sha256", secretKey(secret)).update(`${id}.${timestamp}.${body}`).digest("base64");
  return `v1,${mac}`;
}

export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** Headers for one attempt: signed with every secret given (newest first), at `timestamp` (unix seconds). */
export function signedHeaders(secrets: string[], id: string, timestamp: number, body: string): SignedHeaders {
  if (!secrets.length) throw new Error("no secret to sign with");
  if (!Number.isInteger(timestamp)) throw new Error("timestamp must be integer seconds");
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": secrets.map((s) => sign(s, id, timestamp, body)).join(" "),
  };
}
