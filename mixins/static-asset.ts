// A fixed text served as a public GET: the stylesheets and scripts of the pages (/docs, the consumer
// page, the browser verifier). One declaration instead of a hand-written action for each.
import type { Context } from "moleculer";
import { media } from "../lib/schemas/common";

export function staticAsset(opts: { path: string; summary: string; type: "text/css" | "text/javascript"; body: string; maxAgeSeconds?: number }) {
  return {
    rest: { method: "GET", fullPath: opts.path },
    auth: "public",
    summary: opts.summary,
    responses: { 200: media(opts.type === "text/css" ? "The stylesheet" : "The script", opts.type) },
    handler(ctx: Context<any, any>) {
      ctx.meta.$responseType = `${opts.type}; charset=utf-8`;
      if (opts.maxAgeSeconds !== undefined) ctx.meta.$responseHeaders = { "Cache-Control": `public, max-age=${opts.maxAgeSeconds}` };
      return opts.body;
    },
  } as any;
}
