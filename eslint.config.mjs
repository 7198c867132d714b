// Lint: strict on what is a bug, silent on taste. The type checker (tsc --strict) already owns
// types; formatting is nobody's business here. Rules that need type information run too, because
// the bugs this code base can actually have — a promise nobody awaits, an async callback handed to
// an API that ignores its result — are only visible with types.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: ["node_modules/**", "dist/**", "data/**", "coverage/**", "scratch/**", "**/*.d.ts"],
  },
  // Disable comments for rules this config does not enable (no-console) are harmless: not reported.
  { linterOptions: { reportUnusedDisableDirectives: "off" } },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // ---- bugs: errors ------------------------------------------------------------------------
      // A promise neither awaited, returned nor explicitly voided loses its rejection.
      "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: true, ignoreIIFE: true }],
      // An async function where a void callback is expected (event emitters, timers, forEach): its
      // rejection is unhandled. A warning, not an error: the rule cannot see a body that catches
      // everything itself (`setTimeout(async () => { try … catch … })` is fine), so it lists them.
      "@typescript-eslint/no-misused-promises": ["warn", { checksVoidReturn: { arguments: true, attributes: false, properties: false, returns: false, variables: false } }],
      // `await` on something that is not a promise is usually a missing call or a wrong variable.
      "@typescript-eslint/await-thenable": "error",
      // `for (x in array)` iterates keys as strings.
      "@typescript-eslint/no-for-in-array": "error",
      "no-self-compare": "error",
      "no-template-curly-in-string": "error",
      "no-unreachable-loop": "error",
      // `new Promise((r) => setTimeout(r, ms))` returns a timer id from the executor: harmless idiom.
      "no-promise-executor-return": "off",
      "no-constant-binary-expression": "error",
      "no-unused-private-class-members": "error",
      "array-callback-return": ["error", { allowImplicit: true }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-unused-vars": "off",
      // Unused code hides mistakes (a computed value never used) but is rarely one itself: a warning
      // that names it; `_name` marks a deliberate one.
      "@typescript-eslint/no-unused-vars": [
        "warn",
        { args: "after-used", argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none", ignoreRestSiblings: true },
      ],

      // ---- taste and the Moleculer idiom: off --------------------------------------------------
      // Service schemas are `this: any` by design (Moleculer mixes methods in at runtime).
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-this-alias": "off",
      // Lazy require() is used on purpose (PGlite and ganache load only on embedded nodes).
      "@typescript-eslint/no-require-imports": "off",
      "@typescript-eslint/no-var-requires": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/ban-ts-comment": ["error", { "ts-expect-error": "allow-with-description", "ts-ignore": true, "ts-nocheck": true }],
      "@typescript-eslint/no-empty-function": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "no-empty": ["error", { allowEmptyCatch: true }],
      // Control characters in regexes are deliberate in validators (visible-ASCII checks).
      "no-control-regex": "off",
      "prefer-const": ["error", { destructuring: "all" }],
      "no-useless-escape": "off",
      "no-useless-assignment": "off",
      "preserve-caught-error": "off",
    },
  },
  {
    // Test support, harnesses and benches run under a test runner or by hand, never in production:
    // an unhandled rejection there fails a run loudly rather than losing data, so these are warnings
    // (still listed by `npm run lint`); in lib/, services/, mixins/, bin/ they are errors.
    files: ["test/**/*.ts", "bench/**/*.ts", "harness/**/*.ts", "chaos/**/*.ts"],
    rules: {
      "@typescript-eslint/no-floating-promises": ["warn", { ignoreVoid: true, ignoreIIFE: true }],
      "@typescript-eslint/no-misused-promises": ["warn", { checksVoidReturn: { arguments: true, attributes: false, properties: false, returns: false, variables: false } }],
      "@typescript-eslint/no-unused-expressions": "off",
    },
  },
  {
    // Plain JavaScript config files (jest.config.js is CommonJS, this file is ESM): no type info.
    files: ["**/*.js", "**/*.mjs", "**/*.cjs"],
    ...tseslint.configs.disableTypeChecked,
    rules: { ...tseslint.configs.disableTypeChecked.rules, "@typescript-eslint/no-require-imports": "off" },
    languageOptions: {
      globals: { module: "writable", exports: "writable", require: "readonly", process: "readonly", console: "readonly", __dirname: "readonly", URL: "readonly" },
    },
  },
);
