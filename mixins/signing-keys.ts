// Signing keys the cluster makes for itself when none is configured (embedded default, dev
// clusters), kept in the database so every node signs and verifies with the same ones. Production
// gives them as files (TOKEN_KEYS_FILE, JWT_PRIVATE_KEY_FILE).
import type { Database } from "./database";

/** The stored keys of one purpose, oldest first; the first call on an empty table creates one. */
export async function storedKeys(db: Database, purpose: string, make: () => { kid: string; material: string }) {
  const read = () =>
    db.query<{ kid: string; material: string; retired_at: Date | null }>(
      "SELECT kid, material, retired_at FROM signing_keys WHERE purpose = $1 ORDER BY created_at, kid",
      [purpose],
    );
  let { rows } = await read();
  if (!rows.length) {
    const k = make();
    // Two nodes starting together: one insert wins, both read the winner (an advisory lock orders them).
    await db.tx(async (q) => {
      await q.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`signing_keys:${purpose}`]);
      const again = await q.query("SELECT 1 FROM signing_keys WHERE purpose = $1", [purpose]);
      if (!again.rowCount) await q.query("INSERT INTO signing_keys (purpose, kid, material) VALUES ($1, $2, $3)", [purpose, k.kid, k.material]);
    });
    rows = (await read()).rows;
  }
  return rows;
}
