// Gives every service `this.config`: the broker's (set by moleculer.config) or one read from the environment.
import type { ServiceSchema } from "moleculer";
import { loadConfig, Config } from "../lib/config";

export function brokerConfig(broker: any): Config {
  if (!broker.options.voketag) broker.options.voketag = loadConfig();
  return broker.options.voketag as Config;
}

export const ConfigMixin: Partial<ServiceSchema> = {
  created() {
    (this as any).config = brokerConfig(this.broker);
  },
};
