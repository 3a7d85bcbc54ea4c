import { describe, it, expect, vi } from 'vitest';
import type { ArgumentsHost } from '@nestjs/common';
import { MessageExceptionsFilter } from '../../../src/messaging/message-exceptions.filter.js';

function host(type: string): ArgumentsHost {
  return { getType: () => type } as unknown as ArgumentsHost;
}

describe('MessageExceptionsFilter', () => {
  it("hands a handler's error back to the pipeline untouched, logging nothing", () => {
    const filter = new MessageExceptionsFilter();
    const error = new Error('downstream keeps failing');
    const logged = vi.spyOn(MessageExceptionsFilter.prototype, 'handleUnknownError');
    expect(() => filter.catch(error, host('rpc'))).toThrow(error);
    expect(logged).not.toHaveBeenCalled();
  });
});
