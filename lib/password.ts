// Password hashing: argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
import argon2 from "argon2";

const OPTIONS = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, OPTIONS);
}

export async function verifyPassword(hash: string | null, password: string): Promise<boolean> {
  // Without a stored hash still spend the same time, so timing does not reveal which accounts exist.
  if (!hash) {
    await argon2.hash(password, OPTIONS);
    return false;
  }
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}

export function passwordProblem(password: string): string | null {
  if (password.length < 12) return "password must have at least 12 characters";
  if (password.length > 256) return "password must have at most 256 characters";
  return null;
}
