import { describe, it, expect } from 'vitest';
import { shutdownStep } from '../../../src/lifecycle/shutdown-step.js';

describe('shutdownStep', () => {
  it('is true for a step that finishes in time', async () => {
    await expect(shutdownStep(Promise.resolve('done'), 50)).resolves.toBe(true);
  });

  it('is false, without throwing, for a step that fails', async () => {
    await expect(shutdownStep(Promise.reject(new Error('channel closed')), 50)).resolves.toBe(
      false,
    );
  });

  it('stops waiting for a step that never finishes', async () => {
    await expect(shutdownStep(new Promise(() => undefined), 20)).resolves.toBe(false);
  });
});
