import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import * as jose from "jose";
import { createMailer, decodeQuotedPrintable, renderAccountMail, setPasswordLink } from "../../lib/mail";
import { checkRuntimeSetting, RUNTIME_SETTINGS } from "../../lib/runtime-settings";
import { worldShapes, worldShapesJson, decodeTopology } from "../../lib/world-map";
import { generateSigningKey, parsePrivateKeys, publicJwk, signAccessToken, verifyAccessToken } from "../../lib/jwt";

describe("account mail", () => {
  it("renders invitations and resets with the link and its lifetime", () => {
    const link = setPasswordLink("https://vt.example/admin", "tok/en+1");
    expect(link).toBe("https://vt.example/admin/#/set-password?token=tok%2Fen%2B1");
    const inv = renderAccountMail("invite", { name: "Ann", link, validMinutes: 7 * 24 * 60, inviter: "boss@x" });
    expect(inv.text).toContain(link);
    expect(inv.text).toContain("168 hours");
    expect(inv.text).toContain("boss@x invited you");
    const reset = renderAccountMail("reset", { name: "<b>Ann</b>", link, validMinutes: 30 });
    expect(reset.text).toContain("30 minutes");
    expect(reset.html).not.toContain("<b>Ann</b>");
  });

  it("writes .eml files to the outbox without SMTP", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vt-mail-"));
    const m = createMailer({ smtpUrl: null, from: "VokeTag <no-reply@x.test>", outboxDir: dir });
    const link = "https://vt.example/admin/#/set-password?token=" + "A".repeat(60);
    const r = await m.send({ to: "ann@x.test", subject: "Hi", text: `go ${link}\n` });
    expect(r.file).toBeTruthy();
    const eml = fs.readFileSync(r.file!, "utf8");
    expect(eml).toMatch(/^To: ann@x\.test$/m);
    expect(decodeQuotedPrintable(eml)).toContain(link);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    m.close();
  });
});

describe("runtime settings", () => {
  it("accepts integers in range for known keys only", () => {
    expect(checkRuntimeSetting("ANCHOR_INTERVAL", 30)).toEqual({ ok: true, value: 30 });
    expect(checkRuntimeSetting("ANCHOR_INTERVAL", 0)).toMatchObject({ ok: false });
    expect(checkRuntimeSetting("ANCHOR_INTERVAL", 1.5)).toMatchObject({ ok: false });
    expect(checkRuntimeSetting("ANCHOR_INTERVAL", "30")).toMatchObject({ ok: false });
    expect(checkRuntimeSetting("nope", 1)).toMatchObject({ ok: false });
    expect(RUNTIME_SETTINGS.map((s) => s.key)).toContain("RETENTION_SCAN_LOCATION");
  });
});

describe("world map", () => {
  it("has every major country with rings of [lng, lat] and stays small", () => {
    const shapes = worldShapes();
    const codes = new Set(shapes.map((s) => s.c));
    for (const c of ["BR", "PT", "US", "CN", "IN", "AU", "GB", "ZA"]) expect(codes.has(c)).toBe(true);
    const points = shapes.flatMap((s) => s.p.flat());
    expect(Math.min(...points.map((p) => p[0]))).toBeGreaterThanOrEqual(-360);
    expect(Math.max(...points.map((p) => p[0]))).toBeLessThanOrEqual(360);
    expect(Math.min(...points.map((p) => p[1]))).toBeGreaterThanOrEqual(-90);
    expect(Math.max(...points.map((p) => p[1]))).toBeLessThanOrEqual(90);
    expect(worldShapesJson().length).toBeLessThan(200_000);
    // No ring jumps across the map: antimeridian crossings are unwrapped.
    let jump = 0;
    for (const s of shapes) for (const ring of s.p) for (let i = 1; i < ring.length; i++) jump = Math.max(jump, Math.abs(ring[i][0] - ring[i - 1][0]));
    expect(jump).toBeLessThanOrEqual(180);
  });
});

describe("TopoJSON decoding (world-atlas)", () => {
  it("rebuilds rings from shared, delta-encoded, quantised arcs, reversed ones included", () => {
    // Two squares sharing the edge x = 1 (arc 1), the second walking it backwards (~1).
    const topo = {
      type: "Topology",
      transform: { scale: [0.5, 0.5], translate: [-1, -1] },
      arcs: [
        [[4, 2], [-2, 0], [0, 2], [2, 0]],
        [[4, 4], [0, -2]],
        [[4, 4], [2, 0], [0, -2], [-2, 0]],
      ],
      objects: { countries: { type: "GeometryCollection", geometries: [
        { type: "Polygon", id: "076", properties: { name: "West" }, arcs: [[0, 1]] },
        { type: "MultiPolygon", id: "620", properties: { name: "East" }, arcs: [[[2, ~1]]] },
      ] } },
    };
    const [west, east] = decodeTopology(topo, "countries");
    expect(west).toMatchObject({ id: "076", name: "West" });
    expect(west.polygons[0][0]).toEqual([[1, 0], [0, 0], [0, 1], [1, 1], [1, 0]]);
    expect(east.polygons[0][0]).toEqual([[1, 1], [2, 1], [2, 0], [1, 0], [1, 1]]);
    const shapes = worldShapes([{ code: "BR", name: "West", polygons: west.polygons }]);
    expect(shapes[0]).toMatchObject({ c: "BR", n: "West" });
  });
});

describe("JWT keys from JWT_PRIVATE_KEY", () => {
  it("takes several PEMs: the first signs, all verify", async () => {
    const a = generateSigningKey();
    const b = generateSigningKey();
    const keys = parsePrivateKeys(`${b.privatePem}\n${a.privatePem}`);
    expect(keys.map((k) => k.kid)).toEqual([b.kid, a.kid]);
    const opts = { issuer: "i", audience: "a" };
    const old = await signAccessToken(a, { sub: "u", role: "admin", tenant_id: null, email: "e" }, { ...opts, ttlSeconds: 60 });
    const jwks = { keys: keys.map(publicJwk) };
    await expect(verifyAccessToken(old, jwks, opts)).resolves.toMatchObject({ sub: "u" });
    await expect(verifyAccessToken(old, { keys: [publicJwk(b)] }, opts)).rejects.toBeTruthy();
  });
  it("refuses text without a key, and non-RSA keys", () => {
    expect(() => parsePrivateKeys("nothing here")).toThrow(/no PEM/);
    const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect(() => parsePrivateKeys(ec)).toThrow(/RSA/);
  });
  it("refuses alg none and HS256 signed with the public key", async () => {
    const k = generateSigningKey();
    const jwks = { keys: [publicJwk(k)] };
    const opts = { issuer: "i", audience: "a" };
    const none = new jose.UnsecuredJWT({ role: "admin" }).setSubject("u").setIssuer("i").setAudience("a").setIssuedAt().setExpirationTime("5m").encode();
    await expect(verifyAccessToken(none, jwks, opts)).rejects.toBeTruthy();
    const pub = crypto.createPublicKey(k.privatePem).export({ type: "spki", format: "pem" });
    const hs = await new jose.SignJWT({ role: "admin" }).setProtectedHeader({ alg: "HS256", kid: k.kid }).setSubject("u").setIssuer("i").setAudience("a").setIssuedAt().setExpirationTime("5m").sign(Buffer.from(pub));
    await expect(verifyAccessToken(hs, jwks, opts)).rejects.toBeTruthy();
  });
});
