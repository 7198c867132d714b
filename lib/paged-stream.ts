// Exports that never hold the whole result: a Readable that fetches one keyset page at a time, only
// when the consumer (the HTTP response, through backpressure) wants more bytes.
import { Readable } from "node:stream";

export interface PagedSource<R> {
  /** Rows after `last` (null: from the start), in key order; fewer than pageSize means the end. */
  fetchPage(last: R | null): Promise<R[]>;
  pageSize: number;
  /** The text of one row; `first` is true for the very first row of the whole export. */
  line(row: R, first: boolean): string;
  head?: string;
  tail?: string;
}

export function pagedStream<R>(src: PagedSource<R>): Readable {
  async function* pages() {
    if (src.head) yield src.head;
    let last: R | null = null;
    let first = true;
    for (;;) {
      const rows = await src.fetchPage(last);
      if (rows.length) {
        let chunk = "";
        for (const r of rows) {
          chunk += src.line(r, first);
          first = false;
        }
        yield chunk;
        last = rows[rows.length - 1];
      }
      if (rows.length < src.pageSize) break;
    }
    if (src.tail) yield src.tail;
  }
  return Readable.from(pages(), { objectMode: false, highWaterMark: 64 * 1024 });
}

/** Several sources one after another in one stream (a tenant's export: products, then scans, ...). */
export function concatStreams(parts: (() => Readable)[], opts: { head?: string; between?: string; tail?: string } = {}): Readable {
  async function* all() {
    if (opts.head) yield opts.head;
    for (let i = 0; i < parts.length; i++) {
      if (i > 0 && opts.between) yield opts.between;
      for await (const chunk of parts[i]()) yield chunk;
    }
    if (opts.tail) yield opts.tail;
  }
  return Readable.from(all(), { objectMode: false, highWaterMark: 64 * 1024 });
}
