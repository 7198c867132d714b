// Action definitions reach other nodes through Moleculer's INFO packet (utils.safetyObject), which
// drops any object met twice. Real broker, real serialisation: without the middleware the shared
// rule vanishes; with it every action keeps its whole definition.
import { ServiceBroker } from "moleculer";
import { UnsharedDefinitionsMiddleware } from "../../mixins/unshared-definitions";

const uuid = { type: "string", format: "uuid" };
const timestamp = { type: "string", format: "date-time" };
const Thing = { type: "object", properties: { created_at: timestamp, updated_at: timestamp } };
const mixin = { actions: { ready: { params: { id: uuid }, handler: () => true } } };

function schema(name: string) {
  return {
    name,
    mixins: [mixin],
    actions: {
      get: { params: { id: uuid, other: uuid }, responses: { 200: { description: "ok", schema: Thing } }, handler: () => null },
      list: { params: { id: uuid }, responses: { 200: { description: "ok", schema: Thing } }, handler: () => [] },
    },
  };
}

async function sentActions(middlewares: any[]) {
  const broker = new ServiceBroker({ logger: false, middlewares });
  broker.createService(schema("a"));
  broker.createService(schema("b"));
  await broker.start();
  try {
    const info: any = broker.registry.regenerateLocalRawInfo(true);
    const out: Record<string, any> = {};
    for (const svc of info.services) for (const [name, def] of Object.entries<any>(svc.actions)) out[name] = def;
    expect(Object.keys(out)).toEqual(expect.arrayContaining(["a.get", "a.list", "a.ready", "b.get", "b.list", "b.ready"]));
    return out;
  } finally {
    await broker.stop();
  }
}

describe("unshared action definitions", () => {
  it("loses repeated rules without the middleware (the reason it exists)", async () => {
    const actions = await sentActions([]);
    const lost = Object.values<any>(actions).some((a) => !a.params?.id || (a.responses && !a.responses["200"]?.schema?.properties?.updated_at));
    expect(lost).toBe(true);
  });

  it("keeps every action's params and response schemas whole in the INFO packet", async () => {
    const actions = await sentActions([UnsharedDefinitionsMiddleware]);
    for (const name of ["a.get", "b.get"]) expect(actions[name].params).toEqual({ id: uuid, other: uuid });
    for (const name of ["a.ready", "b.ready", "a.list", "b.list"]) expect(actions[name].params).toEqual({ id: uuid });
    for (const name of ["a.get", "b.get", "a.list", "b.list"]) expect(actions[name].responses["200"].schema).toEqual(Thing);
  });
});
