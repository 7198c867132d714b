// Our signer, checked by the reference implementation (the standardwebhooks library), not by itself.
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { generateSecret, signedHeaders, secretKey, newMessageId, sign } from "../../lib/webhook-signing";

const now = () => Math.floor(Date.now() / 1000);

describe("webhook signing (Standard Webhooks)", () => {
  it("makes whsec_ secrets of 32 random bytes", () => {
    const a = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(secretKey(a)).toHaveLength(32);
    expect(generateSecret()).not.toBe(a);
    expect(() => secretKey("sk_abc")).toThrow(/whsec_/);
    expect(() => secretKey("whsec_!!!")).toThrow(/base64/);
    expect(() => secretKey("whsec_" + Buffer.alloc(8).toString("base64"))).toThrow(/24 to 64/);
  });

  it("produces signatures the standardwebhooks library verifies", () => {
    const secret = generateSecret();
    const id = newMessageId();
    const body = JSON.stringify({ type: "batch.registered", timestamp: new Date().toISOString(), data: { batch_id: "b1", note: "ünïcødé ✓" } });
    const headers = signedHeaders([secret], id, now(), body);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, headers as any)).toEqual(JSON.parse(body));
    // The library's own signature for the same input is byte-for-byte ours.
    expect(new Webhook(secret).sign(id, new Date(Number(headers["webhook-timestamp"]) * 1000), body)).toBe(headers["webhook-signature"]);
  });

  it("fails verification for a changed body, id, timestamp or secret", () => {
    const secret = generateSecret();
    const id = newMessageId();
    const body = '{"type":"batch.failed","timestamp":"2026-01-01T00:00:00.000Z","data":{}}';
    const h = signedHeaders([secret], id, now(), body) as any;
    const wh = new Webhook(secret);
    expect(() => wh.verify(body.replace("failed", "anchored"), h)).toThrow(WebhookVerificationError);
    expect(() => wh.verify(body, { ...h, "webhook-id": newMessageId() })).toThrow(WebhookVerificationError);
    expect(() => wh.verify(body, { ...h, "webhook-timestamp": String(Number(h["webhook-timestamp"]) - 1) })).toThrow(WebhookVerificationError);
    expect(() => new Webhook(generateSecret()).verify(body, h)).toThrow(WebhookVerificationError);
    // Receivers reject stale timestamps: why each attempt is signed afresh.
    expect(() => wh.verify(body, signedHeaders([secret], id, now() - 3600, body) as any)).toThrow(/too old/);
  });

  it("signs with both secrets during a rotation, space-separated, so either verifies", () => {
    const oldS = generateSecret();
    const newS = generateSecret();
    const id = newMessageId();
    const body = '{"type":"webhook.test","timestamp":"2026-01-01T00:00:00.000Z","data":{}}';
    const h = signedHeaders([newS, oldS], id, now(), body);
    const parts = h["webhook-signature"].split(" ");
    expect(parts).toHaveLength(2);
    expect(parts[0]).toBe(sign(newS, id, Number(h["webhook-timestamp"]), body));
    expect(new Webhook(newS).verify(body, h as any)).toBeTruthy();
    expect(new Webhook(oldS).verify(body, h as any)).toBeTruthy();
    expect(() => new Webhook(generateSecret()).verify(body, h as any)).toThrow(WebhookVerificationError);
  });

  it("makes message ids that are unique and header-safe", () => {
    const ids = new Set(Array.from({ length: 1000 }, newMessageId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^msg_[A-Za-z0-9_-]{22}$/);
  });
});
