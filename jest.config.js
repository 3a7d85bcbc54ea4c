/** @type {import('jest').Config} */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }];

module.exports = {
  // global (Jest ignores it per project): e2e tests wait on real brokers and delay queues
  testTimeout: 60000,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/unit'],
      testMatch: ['**/*.spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
    },
    {
      displayName: 'e2e',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/e2e'],
      testMatch: ['**/*.e2e-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/e2e/support/global-setup.ts',
    },
    {
      // the reliability suite (npm run test:chaos): several service processes under faults
      displayName: 'chaos',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/chaos'],
      testMatch: ['**/*.chaos-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/e2e/support/global-setup.ts',
    },
    {
      // its smoke subset, part of npm test and CI
      displayName: 'chaos-smoke',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/chaos'],
      testMatch: ['**/*.smoke.chaos-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/e2e/support/global-setup.ts',
    },
    {
      // scale-out (npm run test:cluster): a RabbitMQ cluster and Redlock servers of the tests' own
      displayName: 'cluster',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/cluster'],
      testMatch: ['**/*.cluster-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/e2e/support/global-setup.ts',
    },
    {
      // its smoke subset, part of npm test and CI
      displayName: 'cluster-smoke',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/cluster'],
      testMatch: ['**/*.smoke.cluster-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/e2e/support/global-setup.ts',
    },
  ],
};
