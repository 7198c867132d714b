// Response schemas of the anchor's routes: anchor jobs and their status, the proof document
// (voketag-proof/1, lib/proof and docs/PROOFS.md), verification results and the instance identity.
import { CHAIN_CHECKS, HASH_CHECKS, ISSUER_NAME, PROOF_VERSION } from "../proof";
import { arrayOf, bool, enumOf, int, nullable, obj, str, strings, timestamp, uuid, type JsonSchema } from "./common";

export const ANCHOR_STATUSES = ["pending", "submitted", "confirmed", "final", "failed"] as const;

const hex64: JsonSchema = { type: "string", pattern: "^[0-9a-f]{64}$" };
const txHash: JsonSchema = { type: "string", pattern: "^0x[0-9a-fA-F]{64}$" };
const address: JsonSchema = { type: "string", pattern: "^0x[0-9a-fA-F]{40}$" };
const check = (names: readonly string[]) => obj({ name: enumOf(names), ok: bool, detail: str });

/** POST /v1/anchor: the batch's anchor job (asking again answers the same one). */
export const AnchorJob = obj({ id: uuid, batch_id: uuid, status: enumOf(ANCHOR_STATUSES) });

/** GET /v1/anchor/:batch_id and POST /v1/anchor/:id/retry. */
export const AnchorStatus = obj(
  {
    batch_id: uuid,
    status: enumOf(ANCHOR_STATUSES),
    confirmations: int,
    tx_hash: nullable(txHash),
    block_number: nullable(int),
    chain_id: { ...nullable(int), description: "null only when no period holds the batch yet and the chain cannot be reached." },
    period_id: nullable(uuid),
  },
  { error: { ...nullable(str), description: "Why the anchor failed (only when status is failed)." } },
);

const proofPath = arrayOf(obj({ position: enumOf(["left", "right"]), hash: hex64 }));

export const ProofDocument = obj({
  version: { const: PROOF_VERSION },
  product: obj({
    tag_id: uuid,
    tenant_id: uuid,
    batch_id: uuid,
    sku: str,
    name: str,
    serial: str,
    gtin: nullable(str),
    lot: nullable(str),
    salt: { type: "string", pattern: "^(?:[0-9a-f]{2}){16,}$" },
  }),
  leaf_hash: hex64,
  batch: obj({ id: uuid, root: hex64, leaf_count: { type: "integer", minimum: 1 }, path: proofPath }),
  period: obj({ id: uuid, root: hex64, batch_leaf_hash: hex64, path: proofPath }),
  anchor: obj({ chain_id: { type: "integer", minimum: 1 }, tx_hash: txHash, block_number: { type: "integer", minimum: 0 }, address, confirmations_required: { type: "integer", minimum: 0 } }),
  issued_at: timestamp,
  issuer: obj({ name: { const: ISSUER_NAME } }, { url: { type: "string", format: "uri" } }),
});

/** POST /v1/verify/proof: every check by name, valid when all pass. */
export const ProofVerification = obj({ valid: bool, checks: arrayOf(check([...HASH_CHECKS, ...CHAIN_CHECKS])) });

/** GET /v1/verify/:batch_id: the stored batch recomputed and compared with the chain. */
export const BatchVerification = obj({ batch_id: uuid, valid: bool, checks: arrayOf(check(["leaves", "batch_root", "anchor", "period_path", "transaction"])) });

/** GET /v1/verify/transaction/:tx_id. */
export const TransactionVerification = obj({
  tx_hash: txHash,
  from: address,
  block_number: { ...nullable(int), description: "null while the transaction is pending." },
  confirmations: int,
  anchored_root: { ...nullable(hex64), description: "The period root in the calldata; null when it carries no VokeTag anchor." },
  is_voketag_anchor: bool,
  period: nullable(obj({ id: uuid, root: hex64, status: enumOf(ANCHOR_STATUSES), batches: int, matches: bool })),
});

/** GET /.well-known/voketag.json. */
export const Identity = obj({
  name: { const: ISSUER_NAME },
  url: { type: "string", format: "uri" },
  proof_versions: strings,
  chains: arrayOf(
    obj({
      chain_id: int,
      anchoring_addresses: arrayOf(address),
      current: bool,
      method: { const: "calldata" },
      payload: str,
      payload_prefix: { type: "string", pattern: "^0x[0-9a-f]+$" },
      confirmations_required: int,
    }),
  ),
  token_key_ids: strings,
  jwks_uri: { type: "string", format: "uri" },
  verifier: obj({ page: { type: "string", format: "uri" }, cli: str, spec: str }),
});
