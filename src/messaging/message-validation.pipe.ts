import {
  type ArgumentMetadata,
  Injectable,
  ValidationPipe,
  type ValidationError,
} from '@nestjs/common';
import { CompiledValidation } from './compiled-validation.js';
import { MessageValidationError } from './messaging.errors.js';

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
      const entity = rulesOf(metatype)?.accept(value);
      if (entity !== undefined) return Promise.resolve(entity);
    }
    return super.transform(value, metadata) as Promise<unknown>;
  }

  /**
   * What this pipe does to a whole payload (no property name) of parameter type `metatype`, for a
   * caller that skips Nest's pipeline: `'as-is'` when it passes the value through unvalidated (no
   * class to validate against), the compiled rules when it validates, or `undefined` when only
   * the pipe itself can tell (a class the rules do not cover).
   */
  payloadAcceptor(metatype: unknown): 'as-is' | CompiledValidation | undefined {
    // as Nest hands the parameter over: its rpc parameter type is not 'custom', which is skipped
    const metadata: ArgumentMetadata = {
      type: 'body',
      metatype: metatype as ArgumentMetadata['metatype'],
      data: undefined,
    };
    if (!metatype || !this.toValidate(metadata)) return 'as-is';
    return rulesOf(metatype) ?? undefined;
  }
}

function rulesOf(metatype: object): CompiledValidation | null {
  let rules = compiled.get(metatype);
  if (rules === undefined) {
    rules = CompiledValidation.compile(metatype as new () => object) ?? null;
    compiled.set(metatype, rules);
  }
  return rules;
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
