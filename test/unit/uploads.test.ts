// Where a resumable upload's chunk starts: tus's Upload-Offset, HTTP's Content-Range, or ?offset=.
import { chunkStart } from "../../lib/uploads";

describe("chunkStart", () => {
  it("reads Upload-Offset and ?offset=", () => {
    expect(chunkStart({ uploadOffset: "1048576" })).toEqual({ offset: 1048576 });
    expect(chunkStart({ queryOffset: 0 })).toEqual({ offset: 0 });
  });

  it("reads Content-Range with its end and total", () => {
    expect(chunkStart({ contentRange: "bytes 100-199/5000" })).toEqual({ offset: 100, end: 199, total: 5000 });
    expect(chunkStart({ contentRange: "bytes 100-199/*" })).toEqual({ offset: 100, end: 199, total: undefined });
  });

  it("is null when nothing says where the chunk starts", () => {
    expect(chunkStart({})).toBeNull();
    expect(chunkStart({ uploadOffset: "" })).toBeNull();
  });

  it("refuses malformed or contradictory positions", () => {
    expect(chunkStart({ uploadOffset: "-1" })).toEqual({ error: expect.any(String) });
    expect(chunkStart({ uploadOffset: "1e6" })).toEqual({ error: expect.any(String) });
    expect(chunkStart({ contentRange: "bytes=0-1/2" })).toEqual({ error: expect.any(String) });
    expect(chunkStart({ contentRange: "bytes 9-1/20" })).toEqual({ error: expect.stringMatching(/before the first/) });
    expect(chunkStart({ uploadOffset: "10", contentRange: "bytes 11-20/100" })).toEqual({ error: expect.stringMatching(/disagree/) });
    expect(chunkStart({ uploadOffset: "11", contentRange: "bytes 11-20/100" })).toEqual({ offset: 11, end: 20, total: 100 });
  });
});
