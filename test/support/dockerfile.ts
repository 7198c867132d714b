// A Dockerfile parser for tests (no Docker engine here): instructions with their stage, line
// continuations joined, comments dropped, exec-form arguments decoded, ARGs declared before the
// first FROM substituted into FROM lines.
import fs from "node:fs";

export interface Instruction {
  op: string;
  args: string;
  /** JSON-array (exec) form, decoded; null for shell form. */
  exec: string[] | null;
  flags: Record<string, string>;
  line: number;
}

export interface Stage {
  image: string;
  name: string | null;
  instructions: Instruction[];
}

export interface Dockerfile {
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(file: string): Dockerfile {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const logical: { text: string; line: number }[] = [];
  let buf = "";
  let start = 0;
  lines.forEach((raw, i) => {
    const t = raw.trim();
    if (!buf && (t === "" || t.startsWith("#"))) return;
    if (buf && t.startsWith("#")) return; // comments inside a continuation are dropped
    if (!buf) start = i + 1;
    if (t.endsWith("\\")) buf += t.slice(0, -1) + " ";
    else {
      logical.push({ text: buf + t, line: start });
      buf = "";
    }
  });
  if (buf) throw new Error(`${file}: a line continuation runs off the end of the file`);
  const df: Dockerfile = { globalArgs: {}, stages: [] };
  for (const { text, line } of logical) {
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(text);
    if (!m) throw new Error(`${file}:${line}: not an instruction: ${text}`);
    const op = m[1].toUpperCase();
    let rest = m[2].trim();
    const flags: Record<string, string> = {};
    while (rest.startsWith("--")) {
      const f = /^--([a-z-]+)(?:=(\S+))?\s*/.exec(rest)!;
      flags[f[1]] = f[2] ?? "";
      rest = rest.slice(f[0].length);
    }
    let exec: string[] | null = null;
    const execText = op === "HEALTHCHECK" ? rest.replace(/^CMD\s+/, "") : rest;
    if (execText.startsWith("[")) exec = JSON.parse(execText);
    const ins: Instruction = { op, args: rest, exec, flags, line };
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`${file}:${line}: bad FROM`);
      const image = f[1].replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, v) => df.globalArgs[v] ?? "");
      df.stages.push({ image, name: f[2] ?? null, instructions: [] });
    } else if (!df.stages.length) {
      if (op !== "ARG") throw new Error(`${file}:${line}: only ARG may come before FROM`);
      const [k, v] = rest.split("=");
      df.globalArgs[k] = v ?? "";
    } else df.stages[df.stages.length - 1].instructions.push(ins);
  }
  return df;
}

/** ENV instructions of a stage as key → value (KEY=value pairs, or the old `ENV KEY value`). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.op === "ENV")) {
    if (!i.args.includes("=")) {
      const [k, ...v] = i.args.split(/\s+/);
      env[k] = v.join(" ");
      continue;
    }
    for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g)) env[m[1]] = m[3] ?? m[2];
  }
  return env;
}
