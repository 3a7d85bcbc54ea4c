import { type ArgumentsHost, Catch } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';

/**
 * The application's fallback exception filter. For a message handler (the `rpc` context) it
 * hands the error back to the pipeline untouched, where the settler decides the message's fate
 * and logs ONE event with its code; Nest's default external filter would log every handler
 * error a second time as "ExceptionsHandler". Other contexts (HTTP) get Nest's default
 * behaviour. Filters a user declares with `@UseFilters()` run before this one.
 */
@Catch()
export class MessageExceptionsFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() === 'rpc') throw exception;
    super.catch(exception, host);
  }
}
