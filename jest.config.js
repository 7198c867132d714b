// Two projects: fast pure unit tests, and suites that start brokers, databases, chains and browsers.
const transform = { "^.+\\.ts$": ["@swc/jest", { jsc: { target: "es2022", parser: { syntax: "typescript" } } }] };
module.exports = {
  projects: [
    { displayName: "unit", testEnvironment: "node", transform, testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    { displayName: "integration", testEnvironment: "node", transform, testMatch: ["<rootDir>/test/integration/**/*.test.ts"], slowTestThreshold: 60 },
  ],
  testTimeout: 120000,
};
