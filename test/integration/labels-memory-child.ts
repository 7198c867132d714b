// Child process of labels.test.ts: streams an N-label PDF (pages of 960 labels, as the factory reads
// them from the database) into a sink that only counts bytes, and prints its peak RSS.
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { labelsPdf, Label } from "../../lib/labels";

const n = Number(process.argv[2]);
const token = (i: number) => `k1.${Buffer.from(String(i).padStart(16, "0")).toString("base64url")}.${Buffer.from(String(n - i).padStart(16, "0")).toString("base64url")}`;

async function* pages(): AsyncGenerator<Label[]> {
  for (let i = 0; i < n; i += 960) {
    const page: Label[] = [];
    for (let j = i; j < Math.min(n, i + 960); j++)
      page.push({ url: `https://verify.example.com/01/09506000134352/10/L1/21/SN${j}?vt=${token(j)}`, serial: `SN${j}`, sku: "W-100", name: "Diver 100" });
    yield page;
  }
}

(async () => {
  let bytes = 0;
  await pipeline(
    Readable.from(labelsPdf(pages()), { objectMode: false }),
    new Writable({
      write(chunk, _enc, cb) {
        bytes += chunk.length;
        // A consumer slower than the producer (a client downloading): backpressure must hold memory flat.
        setImmediate(cb);
      },
    }),
  );
  console.log(JSON.stringify({ labels: n, bytes, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
})();
