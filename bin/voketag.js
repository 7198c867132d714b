#!/usr/bin/env node
// The `voketag` command (package.json "bin"): subcommands live in bin/cli/, written in TypeScript
// and loaded through tsx's CommonJS hook (tsx is a runtime dependency).
"use strict";
require("tsx/cjs");
const { main } = require("./cli/main.ts");
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`voketag: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 70;
  },
);
