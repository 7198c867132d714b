// How a period root travels on chain: the calldata of one plain transaction, no contract needed.
// Layout (40 bytes): the 8 ASCII bytes "VOKETAG1" (format tag + version, so a verifier can tell our
// anchors from any other data the same address sends) followed by the 32-byte period root.

export const ANCHOR_MAGIC = "VOKETAG1";
export const ANCHOR_MAGIC_BYTES = Buffer.from(ANCHOR_MAGIC, "ascii");
export const ANCHOR_ROOT_BYTES = 32;
export const ANCHOR_PAYLOAD_BYTES = ANCHOR_MAGIC_BYTES.length + ANCHOR_ROOT_BYTES;

// Gas schedule for a transaction carrying calldata (EIP-2028): base cost, per zero / non-zero byte.
export const TX_BASE_GAS = 21000;
export const CALLDATA_ZERO_BYTE_GAS = 4;
export const CALLDATA_NONZERO_BYTE_GAS = 16;

export function encodeAnchorCalldata(periodRoot: Buffer): string {
  if (!Buffer.isBuffer(periodRoot) || periodRoot.length !== ANCHOR_ROOT_BYTES) throw new TypeError("anchor calldata: period root must be 32 bytes");
  return "0x" + ANCHOR_MAGIC_BYTES.toString("hex") + periodRoot.toString("hex");
}

/** The period root carried by `data`, or null unless `data` is exactly "0x" + magic + 32 bytes. */
export function decodeAnchorCalldata(data: string): Buffer | null {
  if (typeof data !== "string" || !/^0x[0-9a-fA-F]*$/.test(data) || data.length !== 2 + 2 * ANCHOR_PAYLOAD_BYTES) return null;
  const bytes = Buffer.from(data.slice(2), "hex");
  if (!bytes.subarray(0, ANCHOR_MAGIC_BYTES.length).equals(ANCHOR_MAGIC_BYTES)) return null;
  return Buffer.from(bytes.subarray(ANCHOR_MAGIC_BYTES.length));
}

/** Intrinsic gas of a plain transaction carrying `data` (0x-hex): what one anchor costs. */
export function anchorTransactionGas(data: string): number {
  const bytes = Buffer.from(data.startsWith("0x") ? data.slice(2) : data, "hex");
  let gas = TX_BASE_GAS;
  for (const b of bytes) gas += b === 0 ? CALLDATA_ZERO_BYTE_GAS : CALLDATA_NONZERO_BYTE_GAS;
  return gas;
}
