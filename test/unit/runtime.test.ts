// The project pins Node 22 (moleculer 0.15 needs it); the machines ship Node 20.
describe("runtime", () => {
  it("runs on Node.js 22", () => {
    expect(Number(process.versions.node.split(".")[0])).toBe(22);
  });
});
