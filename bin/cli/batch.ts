// `voketag batch create FILE.csv`: registers a batch from a CSV and shows its progress until it is
// registered (or failed); `voketag batch show ID`.
import fs from "node:fs";
import type { CliIo } from "./main";
import { parseArgs, sessionClient } from "./session";
import { Batch, VokeTagError } from "../../sdk";

export const HELP = `usage: voketag batch create FILE.csv [--name NAME] [--markets BR,PT] [--no-wait] [--json]
       voketag batch show BATCH_ID [--json]

The CSV has a header row with the columns sku,name,serial,gtin,lot,attributes (gtin, lot and
attributes optional; attributes is a JSON object).
`;

/** One progress line: a bar, done/total, rate and ETA. */
export function progressLine(b: Batch, width = 30): string {
  const { done, total } = b.progress;
  const frac = total ? Math.min(1, done / total) : b.status === "received" ? 0 : 1;
  const filled = Math.round(frac * width);
  const rate = b.rate_per_s ? ` ${Math.round(b.rate_per_s).toLocaleString("en")}/s` : "";
  const eta = b.eta_s != null ? ` ETA ${b.eta_s}s` : "";
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round(frac * 100)}% ${done.toLocaleString("en")}/${total.toLocaleString("en")} ${b.status}${rate}${eta}`;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { positional, opts } = parseArgs(argv, ["help", "no-wait", "json"]);
  const [sub, arg] = positional;
  if (opts.help || !sub) {
    io.out(HELP);
    return opts.help ? 0 : 2;
  }
  try {
    const client = sessionClient();
    if (sub === "show") {
      if (!arg) return usage(io);
      const b = await client.getBatch(arg);
      io.out(opts.json ? JSON.stringify(b, null, 2) + "\n" : `${b.id}  ${progressLine(b)}\n`);
      return b.status === "failed" ? 1 : 0;
    }
    if (sub !== "create" || !arg) return usage(io);
    const csv = fs.readFileSync(arg, "utf8");
    const query: Record<string, string> = {};
    if (typeof opts.name === "string") query.name = opts.name;
    if (typeof opts.markets === "string") query.market_regions = opts.markets;
    const accepted = await client.registerBatchCsv(csv, query);
    io.err(`batch ${accepted.id} accepted\n`);
    if (opts["no-wait"]) {
      io.out(opts.json ? JSON.stringify(accepted) + "\n" : `${accepted.id}\n`);
      return 0;
    }
    const tty = process.stderr.isTTY;
    const final = await client.waitForBatch(accepted.id, (b) => io.err(tty ? `\r${progressLine(b)}` : `${progressLine(b)}\n`), 500);
    if (tty) io.err("\n");
    if (final.status === "failed") {
      io.err(`batch failed:\n${(final.errors ?? []).map((e) => `  row ${e.row}${e.field ? ` (${e.field})` : ""}: ${e.message}`).join("\n")}\n`);
      return 1;
    }
    io.out(opts.json ? JSON.stringify(final, null, 2) + "\n" : `${final.id} ${final.status} (${final.progress.total} products)\n`);
    return 0;
  } catch (err) {
    io.err(`voketag batch: ${err instanceof VokeTagError ? `${err.status} ${err.message}${err.details ? `\n${JSON.stringify(err.details, null, 2)}` : ""}` : (err as Error).message}\n`);
    return 1;
  }
}

function usage(io: CliIo) {
  io.err(HELP);
  return 2;
}
