import { EventEmitter } from 'node:events';
import {
  type Channel,
  type ChannelModel,
  type ConsumeMessage,
  IllegalOperationError,
  type Message,
  type Options,
  type Replies,
} from 'amqplib';

/** What a channel sent or was asked, in order. */
export type ChannelCall =
  | { readonly op: 'ack'; readonly tag: number; readonly multiple: boolean }
  | {
      readonly op: 'nack';
      readonly tag: number;
      readonly multiple: boolean;
      readonly requeue: boolean;
    }
  | {
      readonly op: 'assertExchange';
      readonly exchange: string;
      readonly type: string;
      readonly options?: Options.AssertExchange;
    }
  | { readonly op: 'assertQueue'; readonly queue: string; readonly options?: Options.AssertQueue }
  | {
      readonly op: 'bindQueue';
      readonly queue: string;
      readonly source: string;
      readonly pattern: string;
    }
  | { readonly op: 'checkQueue'; readonly queue: string }
  | { readonly op: 'checkExchange'; readonly exchange: string }
  | { readonly op: 'prefetch'; readonly count: number }
  | { readonly op: 'consume'; readonly queue: string }
  | { readonly op: 'cancel'; readonly consumerTag: string }
  | { readonly op: 'close' };

type Operation = ChannelCall['op'];

/** How a test watches a channel and has the broker refuse a call. */
export interface FakeChannelHooks {
  /** Called with every call, in order. */
  readonly onCall?: (call: ChannelCall) => void;
  /** The refusal of this call, if the broker refuses it (the channel then closes). */
  readonly refusal?: (call: ChannelCall) => Error | undefined;
}

/**
 * amqplib's channel as the service uses it, with a broker's view of its deliveries: acks and
 * nacks settle outstanding delivery tags (`multiple` every one up to the tag), an unknown tag is a
 * PRECONDITION_FAILED like the broker's, and anything sent on a closed channel throws as
 * amqplib's does. The test drives the broker side: {@link deliver}, {@link cancelConsumer},
 * {@link closeByBroker}, and {@link refuse} for a call the broker must refuse.
 *
 * The one fake channel of the unit tests (the consumer, topology, settler, processor and ack
 * coalescer specs), like amqp-connection-manager's `FakeChannel` fixture.
 */
export class FakeChannel extends EventEmitter {
  readonly calls: ChannelCall[] = [];
  /** Delivery tags given to the consumer and not yet settled. */
  readonly outstanding = new Set<number>();
  readonly acked = new Set<number>();
  readonly nacked = new Set<number>();
  closed = false;
  private nextTag = 1;
  private consumer: ((message: ConsumeMessage | null) => void) | undefined;
  private readonly refusals = new Map<Operation, Error>();

  constructor(private readonly hooks: FakeChannelHooks = {}) {
    super();
  }

  /** amqplib's type, for code under test that takes a `Channel`. */
  asChannel(): Channel {
    return this as unknown as Channel;
  }

  /** The next call of `op` rejects with `error`, and the channel closes as on a broker refusal. */
  refuse(op: Operation, error: Error): void {
    this.refusals.set(op, error);
  }

  // --- what the code under test calls ---

  ack(message: Message, allUpTo = false): void {
    this.settle('ack', message.fields.deliveryTag, allUpTo, this.acked);
    this.record({ op: 'ack', tag: message.fields.deliveryTag, multiple: allUpTo });
  }

  nack(message: Message, allUpTo = false, requeue = true): void {
    this.settle('nack', message.fields.deliveryTag, allUpTo, this.nacked);
    this.record({ op: 'nack', tag: message.fields.deliveryTag, multiple: allUpTo, requeue });
  }

  assertExchange(
    exchange: string,
    type: string,
    options?: Options.AssertExchange,
  ): Promise<Replies.AssertExchange> {
    return this.rpc({ op: 'assertExchange', exchange, type, options }, { exchange });
  }

  assertQueue(queue: string, options?: Options.AssertQueue): Promise<Replies.AssertQueue> {
    return this.rpc(
      { op: 'assertQueue', queue, options },
      { queue, messageCount: 0, consumerCount: 0 },
    );
  }

  bindQueue(queue: string, source: string, pattern: string): Promise<Replies.Empty> {
    return this.rpc({ op: 'bindQueue', queue, source, pattern }, {});
  }

  checkQueue(queue: string): Promise<Replies.AssertQueue> {
    return this.rpc({ op: 'checkQueue', queue }, { queue, messageCount: 0, consumerCount: 1 });
  }

  checkExchange(exchange: string): Promise<Replies.Empty> {
    return this.rpc({ op: 'checkExchange', exchange }, {});
  }

  prefetch(count: number): Promise<Replies.Empty> {
    return this.rpc({ op: 'prefetch', count }, {});
  }

  consume(
    queue: string,
    onMessage: (message: ConsumeMessage | null) => void,
  ): Promise<Replies.Consume> {
    this.consumer = onMessage;
    return this.rpc({ op: 'consume', queue }, { consumerTag: `ctag-${queue}` });
  }

  cancel(consumerTag: string): Promise<Replies.Empty> {
    this.consumer = undefined;
    return this.rpc({ op: 'cancel', consumerTag }, {});
  }

  close(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('Channel closed'));
    this.record({ op: 'close' });
    this.toClosed();
    return Promise.resolve();
  }

  // --- the broker's side, driven by the test ---

  /**
   * Delivers a message with the next delivery tag (1, 2, …) to the consumer, if there is one
   * (a test of settlement alone needs none); returns it.
   */
  deliver(
    message: Partial<Omit<ConsumeMessage, 'fields'>> & {
      fields?: Partial<ConsumeMessage['fields']>;
    } = {},
  ): ConsumeMessage {
    const deliveryTag = this.nextTag++;
    const delivered = {
      content: Buffer.alloc(0),
      properties: { headers: {} },
      ...message,
      fields: {
        consumerTag: 'ctag',
        redelivered: false,
        exchange: 'ledger',
        routingKey: 'transaction.created',
        ...message.fields,
        // the channel's own tag, whatever the message carried
        deliveryTag,
      },
    } as ConsumeMessage;
    this.outstanding.add(deliveryTag);
    this.consumer?.(delivered);
    return delivered;
  }

  /** The acks and nacks sent, in order. */
  get settlements(): ChannelCall[] {
    return this.calls.filter((c) => c.op === 'ack' || c.op === 'nack');
  }

  /** basic.cancel from the broker (its queue deleted, a consumer timeout). */
  cancelConsumer(): void {
    const consumer = this.consumer;
    this.consumer = undefined;
    consumer?.(null);
  }

  /** The broker closes the channel (a channel error): 'error' (to whoever listens), then 'close'. */
  closeByBroker(error = new Error('Channel closed by server: 406 (PRECONDITION-FAILED)')): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    this.toClosed();
  }

  private toClosed(): void {
    if (this.closed) return;
    this.closed = true;
    // the broker takes back what was not settled
    this.outstanding.clear();
    this.emit('close');
  }

  private settle(op: string, tag: number, multiple: boolean, into: Set<number>): void {
    if (this.closed) throw new IllegalOperationError('Channel closed', '');
    if (!this.outstanding.has(tag))
      throw new Error(`PRECONDITION_FAILED - unknown delivery tag ${tag} (${op})`);
    for (const t of [...this.outstanding]) {
      if (t === tag || (multiple && t < tag)) {
        this.outstanding.delete(t);
        into.add(t);
      }
    }
  }

  private rpc<T>(call: ChannelCall, reply: T): Promise<T> {
    if (this.closed) return Promise.reject(new Error('Channel closed'));
    this.record(call);
    const refusal = this.refusals.get(call.op) ?? this.hooks.refusal?.(call);
    if (refusal === undefined) return Promise.resolve(reply);
    this.refusals.delete(call.op);
    this.closeByBroker(refusal);
    return Promise.reject(refusal);
  }

  private record(call: ChannelCall): void {
    this.calls.push(call);
    this.hooks.onCall?.(call);
  }
}

/** amqplib's connection as far as channels go: every channel it opened, and every call, in order. */
export class FakeConnection {
  readonly channels: FakeChannel[] = [];
  readonly calls: ChannelCall[] = [];
  /** Called with each channel as it opens (the nth, from 0), to set up refusals. */
  onChannel: (channel: FakeChannel, index: number) => void = () => undefined;
  /** The broker's refusal of any call on any channel, as a rule (a queue that exists as it is). */
  refuseWhen: (call: ChannelCall) => Error | undefined = () => undefined;
  private readonly refusedCalls = new Map<number, Error>();

  /** The broker refuses the call at `index` (from 0) among all channels' calls. */
  refuseCall(index: number, error: Error): void {
    this.refusedCalls.set(index, error);
  }

  createChannel(): Promise<Channel> {
    const channel = new FakeChannel({
      onCall: (call) => this.calls.push(call),
      refusal: (call) => this.refusedCalls.get(this.calls.length - 1) ?? this.refuseWhen(call),
    });
    this.onChannel(channel, this.channels.length);
    this.channels.push(channel);
    return Promise.resolve(channel.asChannel());
  }

  asModel(): ChannelModel {
    return this as unknown as ChannelModel;
  }

  /** The channels that consume (not the ones opened for declarations only). */
  get consuming(): FakeChannel[] {
    return this.channels.filter((c) => c.calls.some((call) => call.op === 'consume'));
  }
}
