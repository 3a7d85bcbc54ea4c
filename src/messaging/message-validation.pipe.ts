import {
  type ArgumentMetadata,
  Injectable,
  ValidationPipe,
  type ValidationError,
} from '@nestjs/common';
import { CompiledValidation } from './compiled-validation';
import { MessageValidationError } from './messaging.errors';

/** Per DTO class, shared by every pipe instance: its compiled rules, or null (pipe's path). */
const compiled = new WeakMap<object, CompiledValidation | null>();

/**
 * Nest's ValidationPipe with the settings a message consumer needs: payloads are transformed to
 * the DTO class, unknown properties are stripped (producers may add fields before consumers know
 * them), and a failure throws {@link MessageValidationError}, which dead-letters the message with
 * every violation in `x-exception-message` instead of a 400 meant for HTTP.
 *
 * A valid flat payload is accepted by the DTO's rules compiled once ({@link CompiledValidation}),
 * with the same result; anything else (a violation, nested DTOs, async rules) takes Nest's path.
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

  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const { metatype } = metadata;
    if (metatype && this.toValidate(metadata)) {
      let rules = compiled.get(metatype);
      if (rules === undefined) {
        rules = CompiledValidation.compile(metatype as new () => object) ?? null;
        compiled.set(metatype, rules);
      }
      const entity = rules?.accept(value);
      if (entity !== undefined) return Promise.resolve(entity);
    }
    return super.transform(value, metadata) as Promise<unknown>;
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
