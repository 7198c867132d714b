// Access tokens: RS256 JWTs signed with jose. Verification pins the algorithm, issuer and audience,
// so `alg: none` and HS256-with-the-public-key tokens are refused by construction.
import crypto from "node:crypto";
import * as jose from "jose";

export interface SigningKey {
  kid: string;
  privatePem: string;
}

export interface AccessClaims {
  sub: string;
  role: string;
  tenant_id: string | null;
  email: string;
}

export function generateSigningKey(): SigningKey {
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { kid: kidFor(privatePem), privatePem };
}

/** The kid is the RFC 7638 thumbprint-like digest of the public key: stable and collision-free. */
export function kidFor(privatePem: string): string {
  const pub = crypto.createPublicKey(privatePem).export({ type: "spki", format: "der" });
  return crypto.createHash("sha256").update(pub).digest("base64url").slice(0, 16);
}

/**
 * JWT_PRIVATE_KEY may hold several PEM private keys one after the other: the first signs, the
 * others only verify (rotation with keys from files: put the new key first and keep the old one
 * after it until its last tokens have expired, JWT_TTL seconds).
 */
export function parsePrivateKeys(bundle: string): SigningKey[] {
  const pems = bundle.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/g) ?? [];
  if (!pems.length) throw new Error("JWT_PRIVATE_KEY holds no PEM private key");
  return pems.map((pem) => {
    const key = crypto.createPrivateKey(pem);
    if (key.asymmetricKeyType !== "rsa") throw new Error("JWT_PRIVATE_KEY must be RSA keys (RS256)");
    const privatePem = key.export({ type: "pkcs8", format: "pem" }).toString();
    return { kid: kidFor(privatePem), privatePem };
  });
}

export function publicJwk(key: SigningKey): jose.JWK {
  const jwk = crypto.createPublicKey(key.privatePem).export({ format: "jwk" }) as jose.JWK;
  return { ...jwk, kid: key.kid, alg: "RS256", use: "sig" };
}

export async function signAccessToken(
  key: SigningKey,
  claims: AccessClaims,
  opts: { issuer: string; audience: string; ttlSeconds: number },
): Promise<string> {
  const pk = crypto.createPrivateKey(key.privatePem);
  return new jose.SignJWT({ role: claims.role, tenant_id: claims.tenant_id, email: claims.email })
    .setProtectedHeader({ alg: "RS256", kid: key.kid, typ: "JWT" })
    .setSubject(claims.sub)
    .setIssuer(opts.issuer)
    .setAudience(opts.audience)
    .setIssuedAt()
    .setJti(crypto.randomUUID())
    .setExpirationTime(Math.floor(Date.now() / 1000) + opts.ttlSeconds)
    .sign(pk);
}

export async function verifyAccessToken(
  token: string,
  jwks: { keys: jose.JWK[] },
  opts: { issuer: string; audience: string },
): Promise<AccessClaims & { exp: number }> {
  const set = jose.createLocalJWKSet(jwks as jose.JSONWebKeySet);
  const { payload } = await jose.jwtVerify(token, set, {
    algorithms: ["RS256"],
    issuer: opts.issuer,
    audience: opts.audience,
    requiredClaims: ["sub", "exp", "iat"],
  });
  return {
    sub: String(payload.sub),
    role: String(payload.role),
    tenant_id: (payload.tenant_id as string) ?? null,
    email: String(payload.email ?? ""),
    exp: Number(payload.exp),
  };
}
