// Client errors with the codes the REST contract names. Moleculer errors keep code/type/data across
// nodes, so a 404 thrown on a factory node is a 404 at the gateway.
import { Errors } from "moleculer";
import { decodeCursor } from "../lib/cursor";

const make = (status: number, type: string) => (message: string, details?: unknown) =>
  new Errors.MoleculerClientError(message, status, type, details);

export const badRequest = make(400, "BAD_REQUEST");
export const unauthorized = make(401, "UNAUTHORIZED");
export const forbidden = make(403, "FORBIDDEN");
export const notFound = (what = "resource") => new Errors.MoleculerClientError(`${what} not found`, 404, "NOT_FOUND");
export const conflict = make(409, "CONFLICT");
export const unprocessable = make(422, "UNPROCESSABLE");
export const tooMany = (message: string, retryAfter: number) =>
  new Errors.MoleculerClientError(message, 429, "RATE_LIMITED", { retry_after: retryAfter });
/** A dependency is down: the client may retry (503 with Retry-After at the gateway). */
export const unavailable = (message: string, retryAfter = 5) =>
  new Errors.MoleculerRetryableError(message, 503, "SERVICE_UNAVAILABLE", { retry_after: retryAfter });

/** Is this a database connection failure (not a constraint or syntax error)? */
export function isConnectionError(err: any): boolean {
  const code = err?.code;
  return (
    code === "ECONNREFUSED" || code === "ECONNRESET" || code === "ETIMEDOUT" || code === "57P01" || code === "57P03" ||
    /connection terminated|timeout exceeded when trying to connect|Connection terminated/i.test(String(err?.message))
  );
}

/** A list's `cursor` parameter decoded, null when absent; a cursor we did not make is a 400. */
export function cursorParam(cursor: string | undefined, arity: number): (string | number)[] | null {
  if (!cursor) return null;
  const c = decodeCursor(cursor, arity);
  if (!c) throw badRequest("invalid cursor");
  return c;
}
