// `voketag labels BATCH_ID --format pdf|svg|csv -o FILE`: downloads a batch's labels as a stream.
import fs from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CliIo } from "./main";
import { parseArgs, sessionClient } from "./session";
import { VokeTagError } from "../../sdk";

export const HELP = `usage: voketag labels BATCH_ID [--format pdf|svg|csv] [-o FILE]

Writes the labels to FILE (default labels-BATCH_ID.FORMAT); "-o -" writes to standard output.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { positional, opts } = parseArgs(argv, ["help"]);
  const [batchId] = positional;
  if (opts.help || !batchId) {
    io.out(HELP);
    return opts.help ? 0 : 2;
  }
  const format = (typeof opts.format === "string" ? opts.format : "pdf") as "pdf" | "svg" | "csv";
  if (!["pdf", "svg", "csv"].includes(format)) {
    io.err(`voketag labels: --format must be pdf, svg or csv\n`);
    return 2;
  }
  const output = typeof opts.output === "string" ? opts.output : `labels-${batchId}.${format}`;
  try {
    const res = await sessionClient().labels(batchId, format);
    const body = Readable.fromWeb(res.body as any);
    if (output === "-") await pipeline(body, process.stdout);
    else {
      await pipeline(body, fs.createWriteStream(output));
      io.err(`wrote ${fs.statSync(output).size.toLocaleString("en")} bytes to ${output}\n`);
    }
    return 0;
  } catch (err) {
    io.err(`voketag labels: ${err instanceof VokeTagError ? `${err.status} ${err.message}` : (err as Error).message}\n`);
    return 1;
  }
}
