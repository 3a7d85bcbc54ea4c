import {
  EXCEPTION_FILTERS_METADATA,
  GUARDS_METADATA,
  INTERCEPTORS_METADATA,
  PIPES_METADATA,
  ROUTE_ARGS_METADATA,
} from '@nestjs/common/constants';
import type { ApplicationConfig } from '@nestjs/core';
import type { ExternalContextCreator } from '@nestjs/core';
import { isObservable, lastValueFrom } from 'rxjs';
import type { MessageContext } from './message.context.js';
import { MessageExceptionsFilter } from './message-exceptions.filter.js';
import type { MessageValidationPipe } from './message-validation.pipe.js';
import { DEFAULT_PARAMETERS_METADATA } from './messaging.constants.js';

/** A handler as the processor calls it. */
export type HandlerInvoke = (payload: unknown, context: MessageContext) => Promise<unknown>;

/** One `@MessageHandler()` method, with the ways Nest may be asked to call it. */
export interface HandlerMethodRef {
  readonly instance: object;
  readonly method: string;
  readonly callback: (...args: unknown[]) => unknown;
  /** The method wrapped by Nest's ExternalContextCreator (guards, interceptors, pipes, filters). */
  readonly viaNest: HandlerInvoke;
}

const ENHANCER_METADATA = [
  GUARDS_METADATA,
  INTERCEPTORS_METADATA,
  PIPES_METADATA,
  EXCEPTION_FILTERS_METADATA,
];

/**
 * The handler called without Nest's pipeline, when that pipeline would add nothing: the method
 * declares no parameter decorators (it takes the payload and the context), and no guard,
 * interceptor, pipe or exception filter applies to it, declared on the method, on its class or
 * globally (`useGlobal*()`, `APP_*` providers), other than the service's own
 * {@link MessageExceptionsFilter}, which rethrows in the rpc context. Nest's pipeline is a
 * handful of promises and closures per message; for the ledger, a few percent of the service's
 * CPU.
 *
 * A payload the compiled rules of its DTO accept goes straight to the method, as the same DTO
 * instance {@link MessageValidationPipe} would build; any other payload takes Nest's path, where
 * the pipe reports precisely why it is invalid. Undefined (always Nest's path) when any of the
 * above does not hold, or when the DTO's rules are not compiled.
 */
export function directInvoke(
  handler: HandlerMethodRef,
  contextCreator: ExternalContextCreator,
  pipe: MessageValidationPipe,
): HandlerInvoke | undefined {
  const { instance, method, callback, viaNest } = handler;
  const type = instance.constructor;
  // the parameters Nest would resolve (read as it reads them) are exactly the defaults
  const parameters: unknown = Reflect.getMetadata(ROUTE_ARGS_METADATA, type, method);
  if (
    parameters === undefined ||
    parameters !== Reflect.getMetadata(DEFAULT_PARAMETERS_METADATA, type, method)
  ) {
    return undefined;
  }
  if (declaresEnhancers(callback) || declaresEnhancers(type)) return undefined;
  const config = applicationConfigOf(contextCreator);
  if (!config || globalEnhancersApply(config)) return undefined;
  const paramTypes = Reflect.getMetadata('design:paramtypes', instance, method) as
    unknown[] | undefined;
  const acceptor = pipe.payloadAcceptor(paramTypes?.[0]);
  if (acceptor === undefined) return undefined;
  return (payload, context) => {
    let argument = payload;
    if (acceptor !== 'as-is') {
      const entity = acceptor.accept(payload);
      if (entity === undefined) return viaNest(payload, context);
      argument = entity;
    }
    try {
      const result = callback.call(instance, argument, context);
      // as Nest's ExternalContextCreator: an Observable resolves to its last value
      return isObservable(result) ? lastValueFrom(result) : Promise.resolve(result);
    } catch (error) {
      // what the method threw, as it threw it (Nest's path rejects with the same value)
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return Promise.reject(error);
    }
  };
}

function declaresEnhancers(target: object): boolean {
  return ENHANCER_METADATA.some((key) => {
    const value: unknown = Reflect.getMetadata(key, target);
    return Array.isArray(value) ? value.length > 0 : value !== undefined;
  });
}

function globalEnhancersApply(config: ApplicationConfig): boolean {
  return (
    config.getGlobalGuards().length > 0 ||
    config.getGlobalRequestGuards().length > 0 ||
    config.getGlobalInterceptors().length > 0 ||
    config.getGlobalRequestInterceptors().length > 0 ||
    config.getGlobalPipes().length > 0 ||
    config.getGlobalRequestPipes().length > 0 ||
    config.getGlobalRequestFilters().length > 0 ||
    config.getGlobalFilters().some((filter) => !(filter instanceof MessageExceptionsFilter))
  );
}

/**
 * The application config Nest's context creators read the global enhancers from. It is not
 * injectable; the ExternalContextCreator's guards context creator holds it (a private field).
 * Undefined when that is not so (another Nest version): every handler then takes Nest's path.
 */
function applicationConfigOf(
  contextCreator: ExternalContextCreator,
): ApplicationConfig | undefined {
  const guards = (contextCreator as unknown as { guardsContextCreator?: { config?: unknown } })
    .guardsContextCreator;
  const config = guards?.config as Partial<ApplicationConfig> | undefined;
  return typeof config?.getGlobalGuards === 'function' &&
    typeof config.getGlobalRequestFilters === 'function'
    ? (config as ApplicationConfig)
    : undefined;
}
