// Where the CLI keeps its server address and credentials between commands: a JSON file readable by
// its owner only ($VOKETAG_CONFIG, default ~/.config/voketag/credentials.json).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createClient, VokeTagClient } from "../../sdk";

export interface Session {
  base_url: string;
  api_key?: string;
  access_token?: string;
  refresh_token?: string;
  email?: string;
}

export function sessionFile(): string {
  return process.env.VOKETAG_CONFIG || path.join(os.homedir(), ".config", "voketag", "credentials.json");
}

export function loadSession(): Session | null {
  try {
    return JSON.parse(fs.readFileSync(sessionFile(), "utf8"));
  } catch {
    return null;
  }
}

export function saveSession(s: Session) {
  const file = sessionFile();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, JSON.stringify(s, null, 2) + "\n", { mode: 0o600 });
}

/** A client from the saved session (an API key wins over a user's token). */
export function sessionClient(): VokeTagClient {
  const s = loadSession();
  if (!s) throw new Error(`not logged in: run "voketag login" first (no ${sessionFile()})`);
  return createClient({ baseUrl: s.base_url, apiKey: s.api_key, accessToken: s.api_key ? undefined : s.access_token });
}

/** `--name value` and `--flag` options after positional arguments. */
export function parseArgs(argv: string[], flags: string[] = []): { positional: string[]; opts: Record<string, string | true> } {
  const positional: string[] = [];
  const opts: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const [k, inline] = a.slice(2).split("=", 2);
      if (inline !== undefined) opts[k] = inline;
      else if (flags.includes(k) || i + 1 >= argv.length || argv[i + 1].startsWith("--")) opts[k] = true;
      else opts[k] = argv[++i];
    } else if (a === "-o") opts.output = argv[++i];
    else positional.push(a);
  }
  return { positional, opts };
}
