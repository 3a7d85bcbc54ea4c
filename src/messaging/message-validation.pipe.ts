import { Injectable, ValidationPipe, type ValidationError } from '@nestjs/common';
import { MessageValidationError } from './messaging.errors';

/**
 * Nest's ValidationPipe with the settings a message consumer needs: payloads are transformed to
 * the DTO class, unknown properties are stripped (producers may add fields before consumers know
 * them), and a failure throws {@link MessageValidationError}, which dead-letters the message with
 * every violation in `x-exception-message` instead of a 400 meant for HTTP.
 */
@Injectable()
export class MessageValidationPipe extends ValidationPipe {
  constructor() {
    super({
      transform: true,
      whitelist: true,
      forbidUnknownValues: true,
      validationError: { target: false, value: false },
      exceptionFactory: (errors: ValidationError[]) =>
        new MessageValidationError(flatten(errors, '')),
    });
  }
}

function flatten(errors: readonly ValidationError[], path: string): string[] {
  const out: string[] = [];
  for (const error of errors) {
    const property = path ? `${path}.${error.property}` : error.property;
    for (const message of Object.values(error.constraints ?? {})) out.push(message);
    if (error.children && error.children.length > 0) out.push(...flatten(error.children, property));
    if (!error.constraints && !error.children?.length) out.push(`${property} is invalid`);
  }
  return out.length > 0 ? out : ['payload is invalid'];
}
