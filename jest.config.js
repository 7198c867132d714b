// Two projects: fast pure unit tests, and suites that start brokers, databases, chains and browsers.
const transform = { "^.+\\.ts$": "<rootDir>/test/esbuild-transform.js" };
module.exports = {
  projects: [
    { displayName: "unit", testEnvironment: "node", transform, testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    { displayName: "integration", testEnvironment: "node", transform, testMatch: ["<rootDir>/test/integration/**/*.test.ts"], slowTestThreshold: 60 },
  ],
  testTimeout: 120000,
};
