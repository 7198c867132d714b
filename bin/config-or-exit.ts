// The entry points' start: the configuration, or a one-line reason and exit code 2 (a bad setting
// is the operator's to fix, not a crash with a stack trace).
import { loadConfig, ConfigError, Config } from "../lib/config";

export function configOrExit(program: string): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`${program}: configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}
