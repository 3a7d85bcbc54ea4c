import { Inject, Injectable, Logger } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { DiscoveryService, ExternalContextCreator, MetadataScanner, Reflector } from '@nestjs/core';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { amqpConfig, postgresConfig, processingConfig } from '../config/app.config.js';
import { MESSAGE_HANDLER_METADATA } from './messaging.constants.js';
import { HandlerConfigurationError } from './messaging.errors.js';
import {
  isPostgresEffect,
  type EffectKind,
  type HandlerEffect,
  MessageHandlerOptions,
  QueueBinding,
  RegisteredHandler,
} from './message-handler.interfaces.js';
import { MessageContext } from './message.context.js';
import { MessageParamsFactory } from './message-params.factory.js';
import { MessageValidationPipe } from './message-validation.pipe.js';
import { directInvoke, type HandlerInvoke } from './direct-invoke.js';
import { compileTopicPattern } from './routing-key.matcher.js';
import { delayTiers, resolveRetryPolicy } from './retry.policy.js';
import { resolveKillSwitch } from './kill-switch.js';

/**
 * Finds every `@MessageHandler()` method on the application's providers (the pattern of
 * `@nestjs/bullmq`'s explorer) and groups them by queue. Handlers are wrapped by Nest's
 * ExternalContextCreator, so guards, interceptors, pipes and exception filters apply in the
 * `rpc` context as users expect.
 */
@Injectable()
export class MessageHandlerExplorer {
  private readonly logger = new Logger(MessageHandlerExplorer.name);
  private readonly paramsFactory = new MessageParamsFactory();
  /** Tells what the default payload pipe does, for handlers called directly. */
  private readonly payloadPipe = new MessageValidationPipe();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly contextCreator: ExternalContextCreator,
    @Inject(amqpConfig.KEY) private readonly config: ConfigType<typeof amqpConfig>,
    @Inject(processingConfig.KEY) private readonly processing: ConfigType<typeof processingConfig>,
    @Inject(postgresConfig.KEY) private readonly postgres: ConfigType<typeof postgresConfig>,
  ) {}

  explore(): QueueBinding[] {
    const handlers: RegisteredHandler[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object') continue;
      const prototype = Object.getPrototypeOf(instance) as object | null;
      if (!prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const callback = (instance as Record<string, unknown>)[method];
        if (typeof callback !== 'function') continue;
        const options = this.reflector.get<MessageHandlerOptions | undefined>(
          MESSAGE_HANDLER_METADATA,
          callback,
        );
        if (!options) continue;
        const id = `${instance.constructor.name}.${method}`;
        if (!wrapper.isDependencyTreeStatic()) {
          throw new HandlerConfigurationError(
            `${id}: message handlers must live on singleton providers (request- or transient-scoped providers have no instance to call)`,
          );
        }
        handlers.push(this.register(id, instance, method, callback as HandlerMethod, options));
      }
    }
    return groupByQueue(handlers, this.config.prefetch);
  }

  private register(
    id: string,
    instance: object,
    method: string,
    callback: HandlerMethod,
    options: MessageHandlerOptions,
  ): RegisteredHandler {
    const routingKeys = normalizeRoutingKeys(id, options.routingKey);
    for (const [field, value] of [
      ['exchange', options.exchange],
      ['queue', options.queue],
    ] as const) {
      if (typeof value !== 'string' || value.length === 0 || value.length > 255) {
        throw new HandlerConfigurationError(
          `${id}: "${field}" must be a non-empty name of at most 255 characters`,
        );
      }
    }
    if (options.nonRetryable?.some((type) => typeof type !== 'function')) {
      throw new HandlerConfigurationError(`${id}: "nonRetryable" must list error classes`);
    }
    if (
      options.lockKey !== undefined &&
      options.lockKey !== false &&
      typeof options.lockKey !== 'function'
    ) {
      throw new HandlerConfigurationError(
        `${id}: "lockKey" must be a function of the payload, or false for no lock`,
      );
    }
    // a bare string (`effect: 'postgres-commit'`, from JavaScript) would read as no effect at all
    const declared = options.effect as HandlerEffect | string | null | undefined;
    const kind: unknown =
      declared === undefined
        ? 'marker-after'
        : typeof declared === 'object' && declared !== null
          ? declared.kind
          : undefined;
    const effect = kind as EffectKind;
    if (!EFFECT_KINDS.includes(effect)) {
      throw new HandlerConfigurationError(
        `${id}: "effect.kind" must be one of ${EFFECT_KINDS.map((k) => `'${k}'`).join(', ')}`,
      );
    }
    if (isPostgresEffect(effect) && this.postgres.url === undefined) {
      throw new HandlerConfigurationError(
        `${id}: effect '${effect}' needs PostgreSQL: set DATABASE_URL`,
      );
    }
    const slotKey =
      typeof declared === 'object' && declared !== null && 'slotKey' in declared
        ? (declared as { slotKey?: unknown }).slotKey
        : undefined;
    if (slotKey !== undefined && (effect !== 'redis-commit' || typeof slotKey !== 'function')) {
      throw new HandlerConfigurationError(
        `${id}: "effect.slotKey" is a function of the payload, for effect 'redis-commit' only`,
      );
    }
    const killSwitch = resolveKillSwitch(options.killSwitch, this.processing.killSwitch);
    if (typeof killSwitch === 'string') throw new HandlerConfigurationError(`${id}: ${killSwitch}`);
    if (
      options.prefetch !== undefined &&
      (!Number.isInteger(options.prefetch) || options.prefetch < 1)
    ) {
      throw new HandlerConfigurationError(`${id}: "prefetch" must be a positive integer`);
    }
    const viaNest = this.contextCreator.create(
      instance,
      callback,
      method,
      ROUTE_ARGS_METADATA,
      this.paramsFactory,
      undefined,
      undefined,
      undefined,
      'rpc',
    ) as HandlerInvoke;
    const direct = directInvoke(
      { instance, method, callback, viaNest },
      this.contextCreator,
      this.payloadPipe,
    );
    const matchers = routingKeys.map(compileTopicPattern);
    this.logger.log(
      `Registered ${id} on queue "${options.queue}" (${routingKeys.join(', ')}), ${direct ? 'called directly: no guard, interceptor, pipe or filter applies' : "called through Nest's pipeline"}`,
    );
    return {
      id,
      options: {
        exchange: options.exchange,
        queue: options.queue,
        routingKeys,
        prefetch: options.prefetch,
        effect,
        lockKey: options.lockKey ?? 'message-id',
        ...(slotKey === undefined ? {} : { slotKey: slotKey as (payload: never) => string }),
        retry: resolveRetryPolicy(id, options.retry, this.processing.retry),
        nonRetryable: options.nonRetryable ?? [],
        killSwitch,
        payloadType: payloadClass(instance, method),
        publishes: options.publishes ?? [],
        ...(options.description === undefined ? {} : { description: options.description }),
      },
      matches: (key) => matchers.some((m) => m(key)),
      invoke: direct ?? viaNest,
      calledDirectly: direct !== undefined,
    };
  }
}

type HandlerMethod = (...args: unknown[]) => unknown;

const EFFECT_KINDS: readonly EffectKind[] = [
  'marker-after',
  'redis-commit',
  'postgres-transaction',
  'postgres-commit',
  'idempotent',
];

function normalizeRoutingKeys(id: string, routingKey: string | readonly string[]): string[] {
  const keys = typeof routingKey === 'string' ? [routingKey] : [...routingKey];
  if (keys.length === 0 || keys.some((k) => typeof k !== 'string' || k.length > 255)) {
    throw new HandlerConfigurationError(`${id}: "routingKey" must be one or more binding patterns`);
  }
  return keys;
}

/** Groups handlers by queue; handlers sharing a queue must agree on its exchange. */
export function groupByQueue(
  handlers: readonly RegisteredHandler[],
  defaultPrefetch: number,
): QueueBinding[] {
  const byQueue = new Map<string, RegisteredHandler[]>();
  for (const handler of handlers) {
    const list = byQueue.get(handler.options.queue) ?? [];
    const first = list[0];
    if (first && first.options.exchange !== handler.options.exchange) {
      throw new HandlerConfigurationError(
        `${handler.id} and ${first.id} share queue "${handler.options.queue}" but bind it to different exchanges ("${handler.options.exchange}" vs "${first.options.exchange}")`,
      );
    }
    list.push(handler);
    byQueue.set(handler.options.queue, list);
  }
  return [...byQueue.entries()].map(([queue, list]) => ({
    queue,
    exchange: list[0].options.exchange,
    routingKeys: [...new Set(list.flatMap((h) => h.options.routingKeys))],
    prefetch: Math.max(...list.map((h) => h.options.prefetch ?? defaultPrefetch)),
    handlers: list,
    retryTiers: [...new Set(list.flatMap((h) => delayTiers(h.options.retry)))].sort(
      (a, b) => a - b,
    ),
  }));
}

/** Types that say nothing about a payload's shape. */
const UNTYPED: readonly unknown[] = [
  Object,
  String,
  Number,
  Boolean,
  Array,
  Buffer,
  Promise,
  MessageContext,
];

/** The class of a handler's first parameter, when it is a class of the application's. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any class
function payloadClass(instance: object, method: string): Function | undefined {
  const types = Reflect.getMetadata('design:paramtypes', instance, method) as unknown[] | undefined;
  const first = types?.[0];
  return typeof first === 'function' && !UNTYPED.includes(first) ? first : undefined;
}
