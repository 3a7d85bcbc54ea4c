import { describe, it, expect, afterEach } from 'vitest';
import { BAD_INPUTS, ChaosRun } from './support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict } from './support/verdicts.js';

describe('reliability: bad input (smoke)', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('10 % bad input of 10 kinds: each dead-lettered exactly once with its reason, valid ones unaffected', async () => {
    chaos = await ChaosRun.start({ env: { MESSAGE_MAX_BYTES: '4096' } });
    const kinds = Object.keys(BAD_INPUTS);
    for (let round = 0; round < 10; round++) {
      await chaos.publish(90, 90);
      for (const kind of kinds) chaos.publishBad(kind);
      await chaos.confirmed();
    }
    await chaos.settle();
    const verdict = await chaos.classify();
    recordVerdict('10 % bad input, 10 kinds', verdict);
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(900);
    expect(verdict.deadLettered).toEqual({
      MessageDecodeError: 80,
      MessageValidationError: 10,
      MissingMessageIdError: 10,
    });
  }, 120_000);
});
