import type { QueueBinding, RegisteredHandler } from '../messaging/message-handler.interfaces.js';
import { HEADER } from '../messaging/messaging.constants.js';
import { tierQueueName } from '../messaging/retry.policy.js';
import { topologyNames } from '../messaging/queue.topology.js';
import { type JsonSchema, jsonSchemaOf } from './json-schema.js';

/** What the document says about the application itself. */
export interface AsyncApiInfo {
  readonly title: string;
  readonly version: string;
  readonly description?: string;
}

/** What the service's own document says about it (`GET /asyncapi.json`, `npm run asyncapi`). */
export function serviceInfo(version: string): AsyncApiInfo {
  return {
    title: 'message-processor',
    version,
    description:
      'Consumes RabbitMQ messages with handlers registered by decorators, once in effect.',
  };
}

/** An AsyncAPI 3.0 document (a JSON object). */
export type AsyncApiDocument = { readonly asyncapi: '3.0.0' } & Record<string, unknown>;

const AMQP_BINDING = '0.3.0';

/** Trace context and correlation headers every message may carry. */
const TRACE_HEADERS: JsonSchema = {
  traceparent: { type: 'string', description: 'W3C trace context of the publisher' },
  tracestate: { type: 'string', description: 'W3C trace state' },
};

/** What a retry copy and a dead letter carry besides the original message's headers. */
const FAILURE_HEADERS: JsonSchema = {
  [HEADER.exceptionMessage]: { type: 'string', description: 'the last failure, truncated' },
  [HEADER.exceptionType]: { type: 'string', description: 'the error class' },
  [HEADER.exceptionStacktrace]: { type: 'string', description: 'its stack, truncated' },
  [HEADER.attempts]: { type: 'integer', minimum: 0, description: 'attempts made so far' },
  [HEADER.handler]: { type: 'string', description: 'ClassName.method of the handler' },
  [HEADER.originalExchange]: { type: 'string' },
  [HEADER.originalRoutingKey]: { type: 'string' },
  [HEADER.firstFailedAt]: { type: 'string', format: 'date-time' },
  [HEADER.lastFailedAt]: { type: 'string', format: 'date-time' },
  [HEADER.failedAt]: { type: 'string', format: 'date-time', description: 'dead letters only' },
};

/** A channel, message or operation id: letters, digits, `.`, `-` and `_` only. */
function id(...parts: string[]): string {
  return parts.join('.').replace(/[^A-Za-z0-9._-]/g, '_');
}

function ref(...path: string[]): { $ref: string } {
  return { $ref: `#/${path.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}` };
}

function routingKeyBinding(exchange: string): Record<string, unknown> {
  return {
    amqp: {
      is: 'routingKey',
      exchange: { name: exchange, type: 'topic', durable: true, autoDelete: false, vhost: '/' },
      bindingVersion: AMQP_BINDING,
    },
  };
}

function queueBinding(queue: string): Record<string, unknown> {
  return {
    amqp: {
      is: 'queue',
      queue: { name: queue, durable: true, exclusive: false, autoDelete: false, vhost: '/' },
      bindingVersion: AMQP_BINDING,
    },
  };
}

/**
 * The AsyncAPI 3 document of an application's messaging (docs/architecture.md, "AsyncAPI"):
 * for each handler, a channel per routing key it binds (on its topic exchange) and a `receive`
 * operation, its message's payload schema from the handler's payload class; the retry tiers and
 * the dead-letter queue of each queue, with `send` operations carrying the failure headers; and
 * what handlers declare they publish (`@MessageHandler({ publishes })`), with `send` operations.
 */
export function buildAsyncApi(
  bindings: readonly QueueBinding[],
  info: AsyncApiInfo,
): AsyncApiDocument {
  const channels: Record<string, Record<string, unknown>> = {};
  const operations: Record<string, Record<string, unknown>> = {};
  const messages: Record<string, Record<string, unknown>> = {};
  const schemas: Record<string, JsonSchema> = {};

  /** The component message of a payload class (or of a handler's untyped payload). */
  const messageFor = (
    type: RegisteredHandler['options']['payloadType'],
    fallbackName: string,
  ): string => {
    const name = id(type ? type.name : fallbackName);
    if (messages[name] === undefined) {
      let payload: JsonSchema = { description: 'any JSON value (no payload class declared)' };
      if (type) {
        schemas[name] = jsonSchemaOf(type);
        payload = ref('components', 'schemas', name);
      }
      messages[name] = {
        name,
        title: type ? type.name : `Payload of ${fallbackName}`,
        contentType: 'application/json',
        payload,
        headers: { type: 'object', properties: TRACE_HEADERS },
        bindings: { amqp: { bindingVersion: AMQP_BINDING } },
      };
    }
    return name;
  };
  const channel = (
    channelId: string,
    body: Record<string, unknown>,
    messageNames: readonly string[],
  ): void => {
    const existing = channels[channelId];
    const listed = (existing?.messages ?? {}) as Record<string, unknown>;
    for (const m of messageNames) listed[m] = ref('components', 'messages', m);
    channels[channelId] = { ...body, ...existing, messages: listed };
  };

  for (const binding of bindings) {
    const names = topologyNames(binding);
    const queueMessages: string[] = [];
    for (const handler of binding.handlers) {
      const message = messageFor(handler.options.payloadType, handler.id);
      queueMessages.push(message);
      for (const routingKey of handler.options.routingKeys) {
        const channelId = id(binding.exchange, routingKey);
        channel(
          channelId,
          {
            address: routingKey,
            title: `${binding.exchange} ${routingKey}`,
            description: `Published to the topic exchange "${binding.exchange}" with a routing key matching "${routingKey}"; consumed from the queue "${binding.queue}".`,
            bindings: routingKeyBinding(binding.exchange),
          },
          [message],
        );
        const retry = handler.options.retry;
        operations[id('receive', handler.id, routingKey)] = {
          action: 'receive',
          channel: ref('channels', channelId),
          messages: [ref('channels', channelId, 'messages', message)],
          title: handler.id,
          summary: handler.options.description ?? `${handler.id} handles it`,
          description:
            `Consumed from the queue "${binding.queue}" (effect: ${handler.options.effect}). ` +
            `A failed attempt is retried up to ${retry.maxAttempts} attempts in all, with ` +
            `exponential backoff from ${retry.initialDelayMs} ms to ${retry.maxDelayMs} ms, then ` +
            `dead-lettered to "${names.deadLetterQueue}". Deduplicated by messageId.`,
          bindings: { amqp: { ack: true, bindingVersion: AMQP_BINDING } },
        };
      }
      for (const publication of handler.options.publishes ?? []) {
        const published = messageFor(
          publication.payload,
          `${publication.exchange}.${publication.routingKey}`,
        );
        const channelId = id(publication.exchange, publication.routingKey);
        channel(
          channelId,
          {
            address: publication.routingKey,
            title: `${publication.exchange} ${publication.routingKey}`,
            description: `Published to the topic exchange "${publication.exchange}" with the routing key "${publication.routingKey}".`,
            bindings: routingKeyBinding(publication.exchange),
          },
          [published],
        );
        operations[id('send', handler.id, publication.exchange, publication.routingKey)] = {
          action: 'send',
          channel: ref('channels', channelId),
          messages: [ref('channels', channelId, 'messages', published)],
          title: `${handler.id} publishes`,
          summary:
            publication.description ??
            `${handler.id} publishes to "${publication.exchange}" (with confirms; through the outbox for a PostgreSQL effect)`,
          bindings: { amqp: { deliveryMode: 2, mandatory: false, bindingVersion: AMQP_BINDING } },
        };
      }
    }
    // the failure path of the queue: delay tiers and the dead-letter queue
    const failureMessage = id(binding.queue, 'failed');
    messages[failureMessage] = {
      name: failureMessage,
      title: `A failed message of ${binding.queue}`,
      summary: 'The original body and properties, with the failure headers added.',
      contentType: 'application/json',
      payload: {
        description: `the original message: ${queueMessages.join(' or ')}`,
        oneOf: [...new Set(queueMessages)].map((m) => messages[m].payload),
      },
      headers: { type: 'object', properties: { ...TRACE_HEADERS, ...FAILURE_HEADERS } },
    };
    binding.retryTiers.forEach((delayMs, i) => {
      const tier = tierQueueName(binding.queue, i);
      const channelId = id(tier);
      channel(
        channelId,
        {
          address: tier,
          title: `${binding.queue} retry tier ${i + 1}`,
          description: `Delay tier: a retry waits here (per-message expiration, base delay ${delayMs} ms), then the queue dead-letters it back into "${binding.queue}".`,
          bindings: queueBinding(tier),
        },
        [failureMessage],
      );
      operations[id('retry', binding.queue, String(i + 1))] = {
        action: 'send',
        channel: ref('channels', channelId),
        messages: [ref('channels', channelId, 'messages', failureMessage)],
        title: `Retry of ${binding.queue}`,
        summary:
          'A copy of a failed message, published by the service before it acks the original.',
      };
    });
    const dlq = id(names.deadLetterQueue);
    channel(
      dlq,
      {
        address: names.deadLetterQueue,
        title: `${binding.queue} dead letters`,
        description: `Messages of "${binding.queue}" that failed every attempt or could not be processed, published through "${names.deadLetterExchange}" with the routing key "${binding.queue}". Replay them with \`npm run dlq:replay\`.`,
        bindings: queueBinding(names.deadLetterQueue),
      },
      [failureMessage],
    );
    operations[id('deadLetter', binding.queue)] = {
      action: 'send',
      channel: ref('channels', dlq),
      messages: [ref('channels', dlq, 'messages', failureMessage)],
      title: `Dead-lettering of ${binding.queue}`,
      summary: 'A copy with the failure headers, published before the original is acked.',
    };
  }

  return {
    asyncapi: '3.0.0',
    info: {
      title: info.title,
      version: info.version,
      ...(info.description === undefined ? {} : { description: info.description }),
    },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { messages, schemas },
  };
}
