// Response schemas of the gateway's own routes: health, readiness, the OpenAPI document, and the
// media types of its pages. A consumer page answers its errors as HTML pages (lib/scan-page
// consumerPage), while what the gateway refuses before the page runs (bad parameters, 413, 415, 429)
// is the JSON Error: both are declared where both happen.
import type { RouteResponse } from "../openapi";
import { arrayOf, bool, enumOf, freeObject, int, media, nullable, obj, str, strings, type JsonSchema } from "./common";

/** The Error body every JSON error carries (components.schemas.Error in the document). */
export const ErrorBody: JsonSchema = { $ref: "#/components/schemas/Error" };

export const Health = obj({ status: enumOf(["ok"]), node: str, uptime_s: int });

const check = obj({ ok: bool }, { detail: str });

/**
 * Readiness checks by dependency. Each service's `ready` action names its own (database, chain…);
 * a service that does not answer is listed under its name with the reason.
 */
export const ReadinessChecks: JsonSchema = {
  type: "object",
  properties: {
    nats: check,
    redis: check,
    postgres: check,
    pglite: check,
    chain: obj({ ok: bool }, { block: int, chain_id: int, endpoint: str, detail: str }),
    anchor_wallet: obj(
      { ok: bool, address: str },
      {
        balance_wei: { type: "string", pattern: "^[0-9]+$" },
        balance_eth: str,
        low_balance_threshold_wei: { type: "string", pattern: "^[0-9]+$" },
        low_balance: bool,
        anchors_left_estimate: nullable(int),
        warning: str,
        detail: str,
      },
    ),
    anchoring: obj({ ok: bool, unfinished_periods: int, dead_letters: int, oldest_unfinished_seconds: nullable(int) }, { warning: str }),
  },
  additionalProperties: check,
};

export const Readiness = obj({ status: enumOf(["ready", "unavailable"]), failing: strings, checks: ReadinessChecks });

/** /openapi.json: an OpenAPI 3.1 document (its own meta-schema describes the rest). */
export const OpenApiDocument = obj(
  {
    openapi: { type: "string", pattern: "^3\\.1\\." },
    info: obj({ title: str, version: str }, { description: str }),
    tags: arrayOf(obj({ name: str })),
    paths: { type: "object", additionalProperties: freeObject },
    components: freeObject,
  },
  { servers: arrayOf(obj({ url: str })) },
);

/** An HTML page (consumer pages, /docs, /verify). */
export const html = (description: string): RouteResponse => media(description, "text/html");

/** A status a page answers as an HTML page, or as the JSON Error when the gateway refuses first. */
const htmlOrJson = (description: string): RouteResponse => ({ description, content: { "text/html": null, "application/json": ErrorBody } });

/** Error statuses of the consumer pages (/r/:token, the GS1 paths, their forms). */
export function pageErrors(): Record<number, RouteResponse> {
  return {
    400: htmlOrJson("Bad request: an error page (a form that expired, a token too long), or the JSON Error for parameters the gateway refuses."),
    404: html("The not-found page: the path is not a GS1 Digital Link this instance issued, or the tag is unknown (nothing is recorded)."),
    503: htmlOrJson("The verification is unavailable for now (retry after Retry-After): an error page."),
  };
}
