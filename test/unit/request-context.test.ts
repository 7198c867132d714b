// The request id reaches every log line written while a request is served, through nested calls.
import { ServiceBroker } from "moleculer";
import { Writable } from "node:stream";
import { RequestContextMiddleware, requestLogFields, withRequestId } from "../../mixins/request-context";

describe("request id in log lines", () => {
  const lines: any[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const broker = new ServiceBroker({
    logger: { type: "Pino", options: { level: "info", pino: { options: { base: null, mixin: requestLogFields }, destination: sink } } },
    middlewares: [RequestContextMiddleware],
  });
  broker.createService({
    name: "outer",
    actions: {
      async run(ctx) {
        this.logger.info("outer working");
        await new Promise((r) => setTimeout(r, 5));
        return ctx.call("inner.run");
      },
    },
  });
  broker.createService({
    name: "inner",
    actions: {
      run() {
        this.logger.info("inner working");
        return "ok";
      },
    },
  });
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());

  it("tags the lines of the called action and of nested calls with the same request id", async () => {
    await broker.call("outer.run", {}, { requestID: "req-123" });
    await new Promise((r) => setTimeout(r, 50));
    const outer = lines.find((l) => l.msg === "outer working");
    const inner = lines.find((l) => l.msg === "inner working");
    expect(outer.request_id).toBe("req-123");
    expect(inner.request_id).toBe("req-123");
  });

  it("leaves lines outside any request untagged, and tags work resumed for an earlier request", () => {
    expect(requestLogFields()).toEqual({});
    expect(withRequestId("later-1", () => requestLogFields())).toEqual({ request_id: "later-1" });
  });
});
