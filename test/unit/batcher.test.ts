import { TickBatcher } from "../../lib/batcher";

describe("TickBatcher", () => {
  it("runs calls made in one turn of the event loop as one batch, in order", async () => {
    const seen: number[][] = [];
    const b = new TickBatcher<number, number>(async (xs) => {
      seen.push(xs);
      return xs.map((x) => x * 10);
    });
    const out = await Promise.all([1, 2, 3].map((x) => b.load(x)));
    expect(out).toEqual([10, 20, 30]);
    expect(seen).toEqual([[1, 2, 3]]);
    // A later turn is a new batch.
    expect(await b.load(4)).toBe(40);
    expect(seen).toEqual([[1, 2, 3], [4]]);
    expect(b.stats).toEqual({ batches: 2, inputs: 4 });
  });

  it("cuts batches at maxBatch", async () => {
    const sizes: number[] = [];
    const b = new TickBatcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      return xs;
    }, 4);
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.load(i)));
    expect(sizes).toEqual([4, 4, 2]);
  });

  it("fails every call of a batch whose runner throws or answers the wrong number of results", async () => {
    const boom = new TickBatcher<number, number>(() => {
      throw new Error("down");
    });
    await expect(Promise.all([boom.load(1), boom.load(2)])).rejects.toThrow("down");
    const short = new TickBatcher<number, number>(async () => [1]);
    const r = await Promise.allSettled([short.load(1), short.load(2)]);
    expect(r.map((x) => x.status)).toEqual(["rejected", "rejected"]);
    expect((r[0] as PromiseRejectedResult).reason.message).toMatch(/1 results for 2 inputs/);
  });
});
