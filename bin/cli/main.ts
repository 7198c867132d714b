// `voketag <command> [options]`: the command-line client. Each command is a module exporting
// `run(argv, io)` and a one-line summary; commands that need no server (verify) use only lib/.
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  readStdin(): Promise<string>;
}

interface Command {
  summary: string;
  load(): Promise<{ run(argv: string[], io: CliIo): Promise<number> }>;
}

// Loaded with require, not import(): the bin registers tsx's CommonJS hook only, and a command's
// modules load only when it runs. Server commands go through the SDK (sdk/).
const COMMANDS: Record<string, Command> = {
  login: { summary: "save a server and credentials (email and password, or an API key)", load: async () => require("./login") },
  batch: { summary: "create a batch from a CSV and watch it register; show a batch", load: async () => require("./batch") },
  labels: { summary: "download a batch's labels (pdf, svg or csv)", load: async () => require("./labels") },
  verify: { summary: "check a product proof document (offline hashes + the anchoring transaction via --rpc)", load: async () => require("./verify") },
};

export const USAGE = `usage: voketag <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Run "voketag <command> --help" for a command's options.
`;

export const processIo: CliIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  async readStdin() {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  },
};

/** Exit code: 0 success, 1 a negative result (e.g. a proof that does not verify), 2 usage error. */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help" || name === "help") {
    io.out(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`voketag: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  return (await command.load()).run(rest, io);
}
