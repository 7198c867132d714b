// `voketag verify proof.json --rpc URL`: verifies a product proof document with nothing but lib/
// (the same parseProofDocument / verifyProofDocument as the API and the browser verifier) and the
// JSON-RPC endpoint the user names. VokeTag's servers are never contacted unless --issuer is given,
// and then only to read the published anchoring addresses.
import fs from "node:fs";
import { parseArgs } from "node:util";
import { parseProofDocument, verifyProofDocument, ProofFormatError, type ProofCheck, type ProofDocument } from "../../lib/proof";
import { rpcChainReader } from "../../lib/json-rpc";
import type { CliIo } from "./main";

export const VERIFY_USAGE = `usage: voketag verify <proof.json | -> [options]

Checks a VokeTag proof document (voketag-proof/1, docs/PROOFS.md): the product leaf, its path to the
batch root, the batch leaf, its path to the period root, then the anchoring transaction (sender, chain,
block, confirmations) on the chain named in the document.

options:
  --rpc <url>                 JSON-RPC endpoint of the proof's chain (required unless --offline)
  --offline                   check the hashes only; leave the chain checks out
  --issuer <url>              a VokeTag base URL: its /.well-known/voketag.json says which addresses may anchor
  --trusted-address <0x…>     an address that may anchor (repeatable; with --issuer, both count)
  --min-confirmations <n>     demand at least n confirmations (never fewer than the document asks)
  --timeout <seconds>         per request to the RPC or issuer (default 15)
  --json                      print {valid, checks} as JSON
  -h, --help                  this help

exit status: 0 valid, 1 not valid (a check failed or the chain could not be read), 2 usage error or not a proof document
`;

function fail(io: CliIo, message: string): number {
  io.err(`voketag verify: ${message}\n`);
  return 2;
}

async function issuerAddresses(base: string, chainId: number, timeoutMs: number): Promise<string[]> {
  const url = `${base.replace(/\/+$/, "")}/.well-known/voketag.json`;
  const res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const body = (await res.json()) as { chains?: { chain_id: number; anchoring_addresses?: string[] }[] };
  const chain = (body.chains ?? []).find((c) => c.chain_id === chainId);
  return chain?.anchoring_addresses ?? [];
}

function formatChecks(doc: ProofDocument, result: { valid: boolean; checks: ProofCheck[] }): string {
  const p = doc.product;
  const width = Math.max(...result.checks.map((c) => c.name.length));
  const lines = [
    `${doc.version}: product ${p.tag_id} (${p.name}, serial ${p.serial}), batch ${doc.batch.id}`,
    `anchor: chain ${doc.anchor.chain_id}, transaction ${doc.anchor.tx_hash}, block ${doc.anchor.block_number}, from ${doc.anchor.address}`,
    "",
    ...result.checks.map((c) => `  ${c.ok ? "✓" : "✗"} ${c.name.padEnd(width)}  ${c.detail}`),
    "",
  ];
  const passed = result.checks.filter((c) => c.ok).length;
  lines.push(result.valid ? `VALID: ${passed} of ${result.checks.length} checks passed` : `NOT VALID: ${result.checks.length - passed} of ${result.checks.length} checks failed`);
  return lines.join("\n") + "\n";
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        rpc: { type: "string" },
        offline: { type: "boolean", default: false },
        issuer: { type: "string" },
        "trusted-address": { type: "string", multiple: true },
        "min-confirmations": { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    return fail(io, `${(err as Error).message}\n\n${VERIFY_USAGE}`);
  }
  const o = args.values;
  if (o.help) {
    io.out(VERIFY_USAGE);
    return 0;
  }
  if (args.positionals.length !== 1) return fail(io, `give exactly one proof file (or - for standard input)\n\n${VERIFY_USAGE}`);
  if (!o.offline && !o.rpc) return fail(io, "--rpc <url> is required (or --offline to check the hashes only)");
  if (o.offline && o.rpc) return fail(io, "--offline and --rpc exclude each other");
  if (o.rpc && !/^https?:\/\/\S+$/i.test(o.rpc)) return fail(io, `--rpc must be an http(s) URL, got "${o.rpc}"`);
  const timeoutMs = o.timeout === undefined ? 15_000 : Number(o.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) return fail(io, "--timeout must be a positive number of seconds");
  let minConfirmations: number | undefined;
  if (o["min-confirmations"] !== undefined) {
    minConfirmations = Number(o["min-confirmations"]);
    if (!Number.isSafeInteger(minConfirmations) || minConfirmations < 0) return fail(io, "--min-confirmations must be a whole number");
  }
  const trusted = o["trusted-address"] ?? [];
  for (const a of trusted) if (!/^0x[0-9a-fA-F]{40}$/.test(a)) return fail(io, `--trusted-address ${a} is not an address (0x and 40 hex digits)`);

  const file = args.positionals[0];
  let text: string;
  try {
    text = file === "-" ? await io.readStdin() : fs.readFileSync(file, "utf8");
  } catch (err) {
    return fail(io, `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: ProofDocument;
  try {
    doc = parseProofDocument(text);
  } catch (err) {
    if (err instanceof ProofFormatError) {
      if (o.json) io.out(JSON.stringify({ valid: false, error: "not a proof document", problems: err.problems }, null, 2) + "\n");
      return fail(io, `${file} is not a VokeTag proof document:\n${err.problems.map((p) => `  - ${p}`).join("\n")}`);
    }
    throw err;
  }

  let trustedAddresses: string[] | undefined = trusted.length ? [...trusted] : undefined;
  if (o.issuer) {
    try {
      trustedAddresses = [...(trustedAddresses ?? []), ...(await issuerAddresses(o.issuer, doc.anchor.chain_id, timeoutMs))];
    } catch (err) {
      return fail(io, `--issuer: cannot read the anchoring addresses: ${(err as Error).message}`);
    }
  }
  const reader = o.rpc ? rpcChainReader(o.rpc, { timeoutMs }) : undefined;
  const result = await verifyProofDocument(doc, reader, { offline: o.offline, trustedAddresses, minConfirmations });
  io.out(o.json ? JSON.stringify(result, null, 2) + "\n" : formatChecks(doc, result));
  return result.valid ? 0 : 1;
}
