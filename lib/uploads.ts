// Resumable uploads (POST /v1/uploads, PUT /v1/uploads/:id): where a chunk says it starts, in the
// tus style (`Upload-Offset: 1048576`) or the HTTP one (`Content-Range: bytes 1048576-2097151/52428800`).

/** Largest file an upload may declare (issue 3: files up to 2 GB). */
export const MAX_UPLOAD_BYTES = 2 * 1024 ** 3;

/** Bytes per stored piece: a PUT body is stored as it streams, so a cut loses at most this much. */
export const PIECE_BYTES = 1024 * 1024;

export const UPLOAD_CONTENT_TYPES = ["text/csv"] as const;

export type ChunkStart = { offset: number; total?: number; end?: number } | { error: string } | null;

/**
 * The offset a PUT chunk starts at, from `Upload-Offset`, `Content-Range` or `?offset=` (in that
 * order of preference; they must agree when several are given). null when none is given.
 */
export function chunkStart(h: { uploadOffset?: unknown; contentRange?: unknown; queryOffset?: unknown }): ChunkStart {
  const found: { offset: number; total?: number; end?: number }[] = [];
  for (const v of [h.uploadOffset, h.queryOffset]) {
    if (v === undefined || v === null || v === "") continue;
    const s = String(v).trim();
    if (!/^\d{1,16}$/.test(s)) return { error: "Upload-Offset must be a non-negative integer" };
    found.push({ offset: Number(s) });
  }
  if (h.contentRange !== undefined && h.contentRange !== null && h.contentRange !== "") {
    const m = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16}|\*)$/.exec(String(h.contentRange).trim());
    if (!m) return { error: "Content-Range must look like 'bytes 0-1048575/52428800'" };
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (end < start) return { error: "Content-Range: the last byte is before the first" };
    found.push({ offset: start, end, total: m[3] === "*" ? undefined : Number(m[3]) });
  }
  if (!found.length) return null;
  if (found.some((f) => f.offset !== found[0].offset)) return { error: "Upload-Offset, Content-Range and ?offset= disagree" };
  return found.find((f) => f.end !== undefined) ?? found[0];
}
