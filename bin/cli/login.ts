// `voketag login --url URL (--email E [--password P] | --api-key KEY)`: saves the session.
import type { CliIo } from "./main";
import { parseArgs, saveSession, loadSession, sessionFile } from "./session";
import { createClient, VokeTagError } from "../../sdk";

export const HELP = `usage: voketag login --url URL --email EMAIL [--password PASSWORD]
       voketag login --url URL --api-key KEY

Saves the server and credentials in ${"$"}VOKETAG_CONFIG (default ~/.config/voketag/credentials.json,
mode 0600). Without --password the password is read from VOKETAG_PASSWORD or standard input.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { opts } = parseArgs(argv, ["help"]);
  if (opts.help) {
    io.out(HELP);
    return 0;
  }
  const url = (typeof opts.url === "string" ? opts.url : loadSession()?.base_url) as string | undefined;
  if (!url) {
    io.err(`voketag login: --url is required\n\n${HELP}`);
    return 2;
  }
  const client = createClient({ baseUrl: url });
  try {
    if (typeof opts["api-key"] === "string") {
      const keyClient = createClient({ baseUrl: url, apiKey: opts["api-key"] });
      await keyClient.listKeys({ limit: 1 }); // proves the key before it is saved
      saveSession({ base_url: url, api_key: opts["api-key"] });
      io.out(`logged in to ${url} with an API key; session in ${sessionFile()}\n`);
      return 0;
    }
    if (typeof opts.email !== "string") {
      io.err(`voketag login: give --email or --api-key\n\n${HELP}`);
      return 2;
    }
    const password = typeof opts.password === "string" ? opts.password : process.env.VOKETAG_PASSWORD || (await io.readStdin()).trim();
    const t = await client.login(opts.email, password);
    saveSession({ base_url: url, access_token: t.access_token, refresh_token: t.refresh_token, email: opts.email });
    io.out(`logged in to ${url} as ${opts.email}; session in ${sessionFile()}\n`);
    return 0;
  } catch (err) {
    io.err(`voketag login: ${err instanceof VokeTagError ? `${err.status} ${err.message}` : (err as Error).message}\n`);
    return 1;
  }
}
