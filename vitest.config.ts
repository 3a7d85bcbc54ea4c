import { defineConfig } from 'vitest/config';

const GLOBAL_SETUP = ['test/e2e/support/global-setup.ts'];

/**
 * One project per suite; `npm test` runs unit, e2e and the two smoke subsets. The suites run one
 * after another (`groupOrder`), and those that start service processes, brokers or Redis servers
 * of their own run one file at a time: side by side on two cores they would measure each other,
 * not the code.
 */
export default defineConfig({
  test: {
    // e2e tests wait on real brokers and delay queues
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: 'unit', sequence: { groupOrder: 0 }, include: ['test/unit/**/*.spec.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          sequence: { groupOrder: 1 },
          include: ['test/e2e/**/*.e2e-spec.ts'],
          globalSetup: GLOBAL_SETUP,
          fileParallelism: false,
        },
      },
      {
        // the reliability suite (npm run test:chaos): several service processes under faults
        extends: true,
        test: {
          name: 'chaos',
          sequence: { groupOrder: 2 },
          include: ['test/chaos/**/*.chaos-spec.ts'],
          globalSetup: GLOBAL_SETUP,
          fileParallelism: false,
        },
      },
      {
        // its smoke subset, part of npm test and CI
        extends: true,
        test: {
          name: 'chaos-smoke',
          sequence: { groupOrder: 2 },
          include: ['test/chaos/**/*.smoke.chaos-spec.ts'],
          globalSetup: GLOBAL_SETUP,
          fileParallelism: false,
        },
      },
      {
        // scale-out (npm run test:cluster): a RabbitMQ cluster and Redlock servers of the tests' own
        extends: true,
        test: {
          name: 'cluster',
          sequence: { groupOrder: 3 },
          include: ['test/cluster/**/*.cluster-spec.ts'],
          globalSetup: GLOBAL_SETUP,
          fileParallelism: false,
        },
      },
      {
        // its smoke subset, part of npm test and CI
        extends: true,
        test: {
          name: 'cluster-smoke',
          sequence: { groupOrder: 3 },
          include: ['test/cluster/**/*.smoke.cluster-spec.ts'],
          globalSetup: GLOBAL_SETUP,
          fileParallelism: false,
        },
      },
    ],
  },
});
