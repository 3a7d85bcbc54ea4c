import { SetMetadata, applyDecorators } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RpcParamtype } from '@nestjs/microservices/enums/rpc-paramtype.enum';
import { DEFAULT_PARAMETERS_METADATA, MESSAGE_HANDLER_METADATA } from './messaging.constants.js';
import type { MessageHandlerOptions } from './message-handler.interfaces.js';
import { MessageValidationPipe } from './message-validation.pipe.js';

/**
 * Marks a provider method as the handler of a queue. The provider is found at bootstrap through
 * Nest's DiscoveryService; the topology (exchange, queue, dead-letter queue, bindings) is declared
 * from these options. The method receives the validated payload and a {@link MessageContext}:
 *
 * ```ts
 * @MessageHandler({ exchange: 'ledger', routingKey: 'transaction.*', queue: 'ledger.transactions' })
 * async apply(tx: TransactionDto, ctx: MessageContext) { ... }
 * ```
 *
 * Without parameter decorators, the first parameter is the payload (validated by
 * {@link MessageValidationPipe} when its type is a class) and the second the context. With
 * `@Payload(...pipes)` / `@Ctx()` from `@nestjs/microservices`, you choose the pipes yourself.
 * The method resolves to succeed (ack), throws to fail (retried with backoff, dead-lettered when
 * non-retryable or out of attempts, handed back when a dependency is down), or returns
 * `AlreadyProcessed`.
 */
export function MessageHandler(options: MessageHandlerOptions): MethodDecorator {
  return applyDecorators(SetMetadata(MESSAGE_HANDLER_METADATA, options), defaultParameters());
}

/**
 * The payload pipe of every handler with default parameters, as an instance: Nest uses a pipe
 * instance as it is, where a pipe class is looked up among the injectables of the module whose
 * provider has the handler's class as its type, and silently dropped when there is none (a
 * handler provided by `useFactory` or `useValue`, whose provider's type is not the class).
 */
const PAYLOAD_PIPE = new MessageValidationPipe();

// Parameter decorators run before method decorators, so "no metadata yet" means the method
// declared none and gets the documented (payload, context) signature.
function defaultParameters(): MethodDecorator {
  return (target, propertyKey) => {
    const existing: unknown = Reflect.getMetadata(
      ROUTE_ARGS_METADATA,
      target.constructor,
      propertyKey,
    );
    if (existing !== undefined) return;
    const defaults = {
      [`${RpcParamtype.PAYLOAD}:0`]: {
        index: 0,
        data: undefined,
        pipes: [PAYLOAD_PIPE],
      },
      [`${RpcParamtype.CONTEXT}:1`]: { index: 1, data: undefined, pipes: [] },
    };
    Reflect.defineMetadata(ROUTE_ARGS_METADATA, defaults, target.constructor, propertyKey);
    // the same object: whoever later finds it as the method's parameters knows they are these
    Reflect.defineMetadata(DEFAULT_PARAMETERS_METADATA, defaults, target.constructor, propertyKey);
  };
}
