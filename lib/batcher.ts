// Joins calls made in the same turn of the event loop into one call of `run` over all their inputs,
// like DataLoader. On the scan path each database round trip costs far more (a system call, a wake-up
// of a Postgres backend, a plan and an executor start) than the rows it reads, so under load many
// scans sharing one statement is the cheap way; an idle node still answers on the next tick.

export type BatchRunner<I, O> = (inputs: I[]) => Promise<O[]>;

export class TickBatcher<I, O> {
  private pending: { input: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  /** Calls of `run` and inputs given to it, for tests and the benchmark. */
  readonly stats = { batches: 0, inputs: 0 };

  constructor(
    private readonly run: BatchRunner<I, O>,
    private readonly maxBatch = 100,
  ) {}

  load(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ input, resolve, reject });
      if (this.pending.length >= this.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not a microtask: requests parsed in the same poll phase all join.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush() {
    this.scheduled = false;
    const batch = this.pending;
    if (!batch.length) return;
    this.pending = [];
    this.stats.batches++;
    this.stats.inputs += batch.length;
    let out: Promise<O[]>;
    try {
      out = this.run(batch.map((b) => b.input));
    } catch (err) {
      out = Promise.reject(err);
    }
    out.then(
      (results) => {
        if (results.length !== batch.length) {
          const err = new Error(`batch runner returned ${results.length} results for ${batch.length} inputs`);
          for (const b of batch) b.reject(err);
          return;
        }
        batch.forEach((b, i) => b.resolve(results[i]));
      },
      (err) => {
        for (const b of batch) b.reject(err);
      },
    );
  }
}
