// Opaque keyset cursors for lists: { items, next_cursor } with limit default 100, max 1000.
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

export const listParams = {
  limit: { type: "number", integer: true, min: 1, max: MAX_LIMIT, optional: true, convert: true },
  cursor: { type: "string", max: 512, optional: true },
};

export function encodeCursor(parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify(parts)).toString("base64url");
}

/** Decodes a cursor made by encodeCursor; anything else is null (the caller answers 400). */
export function decodeCursor(cursor: string | undefined, arity: number): (string | number)[] | null {
  if (!cursor) return null;
  try {
    const v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(v) && v.length === arity && v.every((x) => typeof x === "string" || typeof x === "number")) return v;
  } catch {
    /* fall through */
  }
  return null;
}

/** Turns limit+1 fetched rows into a page. */
export function page<T>(rows: T[], limit: number, key: (last: T) => (string | number)[]) {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  return { items, next_cursor: more ? encodeCursor(key(items[items.length - 1])) : null };
}
