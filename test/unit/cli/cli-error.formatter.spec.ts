import { describe, it, expect } from 'vitest';
import { describeCliError, messageOf } from '../../../src/cli/cli-error.formatter.js';

describe('describeCliError', () => {
  it('masks the passwords of the given URLs, raw and decoded', () => {
    const text = describeCliError(
      new Error('cannot log in to amqp://svc:p%40ss@h with p@ss; redis said tok3n'),
      ['amqp://svc:p%40ss@h:5672/', 'redis://tok3n@cache:6379'],
    );
    expect(text).toBe('Error: cannot log in to amqp://svc:***@h with ***; redis said ***');
  });

  it('describes things that are not errors', () => {
    expect(describeCliError('boom', [])).toBe('boom');
    expect(messageOf({ code: 404 })).toBe('{ code: 404 }');
  });
});
