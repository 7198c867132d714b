// The tag-token keyring for services that sign or verify tags (factory, scan).
import type { ServiceSchema } from "moleculer";
import { parseKeyring, generateTokenKey, TokenKeyring } from "../lib/token";
import { storedKeys } from "./signing-keys";

export const TokensMixin: Partial<ServiceSchema> = {
  methods: {
    async tokenKeyring(this: any): Promise<TokenKeyring> {
      if (this._keyring) return this._keyring;
      if (this.config.tokenKeys) this._keyring = parseKeyring(this.config.tokenKeys);
      else {
        const rows = await storedKeys(this.db, "token", () => ({ kid: "k1", material: generateTokenKey().toString("base64") }));
        // The newest stored key signs; every stored key still verifies (rotation keeps old tags valid).
        const spec = [...rows].reverse().map((r) => `${r.kid}:${r.material}`).join(",");
        this._keyring = parseKeyring(spec);
      }
      return this._keyring;
    },
  },
};
