import { describe, it, expect } from 'vitest';
import type { ConsumeMessage, XDeath } from 'amqplib';
import { FakeChannel } from '../support/fake-channel.js';
import pino from 'pino';
import type { IdempotencyStore } from '../../../src/messaging/idempotency.store.js';
import { keySlot, slotTagOf } from '../../../src/redis/key-slot.js';
import type { MessageContext, ProcessedMarker } from '../../../src/messaging/message.context.js';
import type {
  EffectKind,
  QueueBinding,
  RegisteredHandler,
} from '../../../src/messaging/message-handler.interfaces.js';
import {
  MessageProcessor,
  attemptOf,
  type ConsumerHandle,
} from '../../../src/messaging/message.processor.js';
import type { PublishOptions } from '../../../src/messaging/message.publisher.js';
import type { MessagePublisher } from '../../../src/messaging/message.publisher.js';
import { MAX_UNSETTLED_DELIVERIES } from '../../../src/messaging/messaging.constants.js';
import { delayTiers } from '../../../src/messaging/retry.policy.js';
import type { MessageMetrics } from '../../../src/metrics/message.metrics.js';
import { LockLostError, type LockService, LockTimeoutError } from '../../../src/lock/index.js';
import type { Lease } from '../../../src/lock/lease.js';
import { MessageLease } from '../../../src/lock/message-lease.js';
import { DEFAULT_POLICY, ledgerDelivery } from './fixtures.js';

const QUEUE = 'ledger.transactions';

/** An x-death entry as RabbitMQ writes it when a delay tier expires a message into its queue. */
function death(queue: string, count: number, reason: XDeath['reason'] = 'expired'): XDeath {
  return {
    queue,
    reason,
    count,
    exchange: '',
    'routing-keys': [queue],
    time: { '!': 'timestamp', value: 1_741_944_413 },
  };
}

const KILL_SWITCH = {
  threshold: 0.5,
  minAttempts: 20,
  windowMs: 60_000,
  restartMs: 30_000,
  trickle: 5,
};

describe('attemptOf', () => {
  it('is 1 for a message delivered for the first time (no headers)', () => {
    expect(attemptOf({})).toBe(1);
  });

  it('is x-attempts + 1 for a retry copy', () => {
    expect(attemptOf({ 'x-attempts': 1 })).toBe(2);
    expect(attemptOf({ 'x-attempts': 4 })).toBe(5);
  });

  it('prefers x-attempts over x-death and x-delivery-count', () => {
    expect(
      attemptOf({
        'x-attempts': 2,
        'x-death': [death(`${QUEUE}.retry.1`, 1), death(`${QUEUE}.retry.2`, 1)],
        'x-delivery-count': 7,
      }),
    ).toBe(3);
  });

  it('takes an x-attempts of zero at its word: a parked copy that has not failed yet', () => {
    expect(
      attemptOf({
        'x-attempts': 0,
        'x-death': [death(`${QUEUE}.retry.1`, 1)],
        'x-delivery-count': 3,
      }),
    ).toBe(1);
  });

  it.each<[string, unknown]>([
    ['negative', -2],
    ['fractional', 1.5],
    ['not a number', 'two'],
    ['null', null],
  ])('ignores an x-attempts that is %s', (_label, value) => {
    expect(attemptOf({ 'x-attempts': value })).toBe(1);
    expect(attemptOf({ 'x-attempts': value, 'x-delivery-count': 2 })).toBe(3);
  });

  it('counts the expiries out of delay tiers recorded in x-death without x-attempts', () => {
    expect(attemptOf({ 'x-death': [death(`${QUEUE}.retry.1`, 1)] })).toBe(2);
    expect(
      attemptOf({ 'x-death': [death(`${QUEUE}.retry.2`, 1), death(`${QUEUE}.retry.1`, 1)] }),
    ).toBe(3);
  });

  it('adds up the count of an x-death entry the broker incremented', () => {
    expect(attemptOf({ 'x-death': [death(`${QUEUE}.retry.1`, 3)] })).toBe(4);
  });

  it('prefers x-death over x-delivery-count', () => {
    expect(attemptOf({ 'x-death': [death(`${QUEUE}.retry.1`, 2)], 'x-delivery-count': 5 })).toBe(3);
  });

  it('ignores x-death entries that are not tier expiries', () => {
    // as decoded off the wire: amqplib's XDeath typing does not hold for what a publisher sent
    const headers: Record<string, unknown> = {
      'x-death': [
        death(QUEUE, 1, 'rejected'),
        death(`${QUEUE}.retry.1`, 1, 'rejected'),
        death('ledger.payments', 2, 'expired'),
        death(`${QUEUE}.retry.1`, 1, 'maxlen'),
        { queue: `${QUEUE}.retry.1`, reason: 'expired', count: '1' },
        { reason: 'expired', count: 1 },
        'not an entry',
        null,
      ],
    };
    expect(attemptOf(headers)).toBe(1);
    expect(attemptOf({ ...headers, 'x-delivery-count': 1 })).toBe(2);
  });

  it('ignores an x-death that is not an array', () => {
    expect(attemptOf({ 'x-death': death(`${QUEUE}.retry.1`, 1) })).toBe(1);
  });

  it('is x-delivery-count + 1 without x-attempts and tier expiries', () => {
    expect(attemptOf({ 'x-delivery-count': 1 })).toBe(2);
    expect(attemptOf({ 'x-delivery-count': 4 })).toBe(5);
  });

  it('is 1 for an x-delivery-count of 0 or one that is not a number', () => {
    expect(attemptOf({ 'x-delivery-count': 0 })).toBe(1);
    expect(attemptOf({ 'x-delivery-count': 'many' })).toBe(1);
  });
});

/* ---------- MessageProcessor: the attempt, the policy and the poison guard reach settlement ---------- */

type Effect =
  | { readonly kind: 'ack' | 'nack'; readonly tag: number }
  | {
      readonly kind: 'publish';
      readonly exchange: string;
      readonly routingKey: string;
      readonly options: PublishOptions;
    };

class FakePublisher {
  constructor(private readonly effects: Effect[]) {}

  publishRaw(
    exchange: string,
    routingKey: string,
    _content: Buffer,
    options: PublishOptions,
  ): Promise<void> {
    this.effects.push({ kind: 'publish', exchange, routingKey, options });
    return Promise.resolve();
  }
}

class FakeIdempotency {
  readonly marked: string[] = [];

  /** @param clustered as on a Redis Cluster: markers start with the slot's hash tag */
  constructor(readonly clustered = false) {}

  marker(queue: string, messageId: string, slotTag?: string): ProcessedMarker {
    return slotTag === undefined
      ? { key: `mp:processed:${queue}:${messageId}`, ttlSeconds: 60 }
      : { key: `mp:processed:${slotTag}${queue}:${messageId}`, ttlSeconds: 60, slotTag };
  }

  isProcessed(): Promise<boolean> {
    return Promise.resolve(false);
  }

  markProcessed(marker: ProcessedMarker): Promise<void> {
    this.marked.push(marker.key);
    return Promise.resolve();
  }
}

/** A lease as a message lock holds it; `lose()` aborts its signal as the watchdog would. */
class FakeLease {
  readonly token = 'token-1';
  readonly fencingToken = 1_764_000_000_000_001;
  private readonly controller = new AbortController();
  released = false;

  constructor(readonly key: string) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get lost(): LockLostError | undefined {
    return this.signal.aborted ? (this.signal.reason as LockLostError) : undefined;
  }

  lose(): void {
    this.controller.abort(new LockLostError(this.key, 'expired'));
  }

  releasedByScript(): void {
    throw new Error('not on the service Redis: nothing for a commit to release');
  }

  release(): Promise<'released'> {
    this.released = true;
    return Promise.resolve('released');
  }
}

type LockBehaviour = 'free' | 'busy' | 'processed' | 'wait-until-stopped';

/** LockService as far as the processor uses it, answering as the test says. */
class FakeLocks {
  behaviour: LockBehaviour = 'free';
  readonly requests: { key: string; markerKey: string | undefined }[] = [];
  readonly leases: FakeLease[] = [];

  async holdForMessage(
    key: string,
    markerKey: string | undefined,
    options: { signal?: AbortSignal },
  ): Promise<MessageLease | 'processed'> {
    const lease = await this.take(key, markerKey, options);
    return lease === 'processed' ? lease : MessageLease.held(lease, `mp:lock:${key}`, 5_000);
  }

  leaveToCommit(key: string, options: { signal?: AbortSignal }): MessageLease {
    return MessageLease.atCommit(
      key,
      `mp:lock:${key}`,
      5_000,
      async () => (await this.take(key, undefined, options)) as Lease,
      () => undefined,
    );
  }

  private take(
    key: string,
    markerKey: string | undefined,
    options: { signal?: AbortSignal },
  ): Promise<Lease | 'processed'> {
    this.requests.push({ key, markerKey });
    switch (this.behaviour) {
      case 'busy':
        return Promise.reject(new LockTimeoutError(key, 5_000));
      case 'processed':
        return Promise.resolve('processed');
      case 'wait-until-stopped':
        // as LockService's wait: refused at once when already aborted, else until it aborts
        return new Promise((_, reject) => {
          const abort = () => reject(options.signal?.reason as Error);
          if (options.signal?.aborted) abort();
          else options.signal?.addEventListener('abort', abort);
        });
      case 'free': {
        const lease = new FakeLease(key);
        this.leases.push(lease);
        return Promise.resolve(lease as unknown as Lease);
      }
    }
  }
}

class FakeMetrics {
  readonly outcomes: string[] = [];

  messageReceived(): void {}

  messageSettled(_queue: string, _handler: string, outcome: string): void {
    this.outcomes.push(outcome);
  }
}

interface SetupOptions {
  /** Default `marker-after`. */
  readonly effect?: EffectKind;
  /** Awaited inside the handler after `during`: what its commit does with the lock. */
  readonly commit?: (context: MessageContext) => Promise<void>;
  /** Default: no lock. */
  readonly lockKey?: ((payload: never) => string) | 'message-id' | false;
  /** Runs inside the handler, with its context. */
  readonly during?: (context: MessageContext) => void;
  /** The service's Redis is a Redis Cluster (default false). */
  readonly clustered?: boolean;
  /** A `redis-commit` handler's `effect.slotKey`. */
  readonly slotKey?: (payload: never) => string;
}

function setup(outcome: 'succeed' | 'fail', opts: SetupOptions = {}) {
  const effects: Effect[] = [];
  const attempts: number[] = [];
  const contexts: MessageContext[] = [];
  const idempotency = new FakeIdempotency(opts.clustered);
  const locks = new FakeLocks();
  const stop = new AbortController();
  const metrics = new FakeMetrics();
  const handler: RegisteredHandler = {
    id: 'LedgerHandler.apply',
    options: {
      exchange: 'ledger',
      queue: QUEUE,
      routingKeys: ['transaction.*'],
      prefetch: undefined,
      effect: opts.effect ?? 'marker-after',
      lockKey: opts.lockKey ?? false,
      ...(opts.slotKey ? { slotKey: opts.slotKey } : {}),
      retry: DEFAULT_POLICY,
      nonRetryable: [],
      killSwitch: KILL_SWITCH,
    },
    matches: (key) => key.startsWith('transaction.'),
    calledDirectly: true,
    invoke: (_payload: unknown, context: MessageContext) => {
      attempts.push(context.attempt);
      contexts.push(context);
      opts.during?.(context);
      const committed = opts.commit?.(context) ?? Promise.resolve();
      return committed.then(() => {
        if (outcome === 'fail') throw new Error('ledger row locked');
      });
    },
  };
  const binding: QueueBinding = {
    queue: QUEUE,
    exchange: 'ledger',
    routingKeys: ['transaction.*'],
    prefetch: 10,
    handlers: [handler],
    retryTiers: delayTiers(DEFAULT_POLICY),
  };
  const consumer: ConsumerHandle = {
    binding,
    accepting: () => true,
    signal: new AbortController().signal,
    stopSignal: stop.signal,
  };
  const processor = new MessageProcessor(
    idempotency as unknown as IdempotencyStore,
    locks as unknown as LockService,
    metrics as unknown as MessageMetrics,
    new FakePublisher(effects) as unknown as MessagePublisher,
    {
      messageMaxBytes: 1_048_576,
      idempotencyTtlSeconds: 60,
      retry: { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 60_000 },
      shutdownTimeoutMs: 1_000,
      effectJournal: { maxLen: 0, ttlSeconds: 86_400 },
      killSwitch: KILL_SWITCH,
    },
    pino({ enabled: false }),
  );
  const channel = new FakeChannel({
    onCall: (call) => {
      if (call.op === 'ack' || call.op === 'nack') effects.push({ kind: call.op, tag: call.tag });
    },
  });
  const process = (message: ConsumeMessage) =>
    processor.process(channel.deliver(message), channel, consumer);
  return { effects, attempts, contexts, metrics, idempotency, locks, stop, process };
}

function onlyPublish(effects: readonly Effect[]): Extract<Effect, { kind: 'publish' }> {
  const publishes = effects.filter((e) => e.kind === 'publish');
  expect(publishes).toHaveLength(1);
  return publishes[0];
}

describe('MessageProcessor', () => {
  it('retries a first failure through the first tier with x-attempts 1, then acks', async () => {
    const { process, effects, attempts, metrics } = setup('fail');
    await process(ledgerDelivery({}));
    expect(attempts).toEqual([1]);
    const publish = onlyPublish(effects);
    expect(publish).toMatchObject({ exchange: '', routingKey: `${QUEUE}.retry.1` });
    expect(publish.options.headers).toMatchObject({ 'x-attempts': 1 });
    expect(Number(publish.options.expiration)).toBeGreaterThanOrEqual(800);
    expect(Number(publish.options.expiration)).toBeLessThanOrEqual(1_000);
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['retry']);
  });

  it('runs a returning retry copy as attempt x-attempts + 1 and sends it to the next tier', async () => {
    const { process, effects, attempts } = setup('fail');
    await process(
      ledgerDelivery({
        'x-attempts': 2,
        'x-death': [death(`${QUEUE}.retry.2`, 1), death(`${QUEUE}.retry.1`, 1)],
      }),
    );
    expect(attempts).toEqual([3]);
    const publish = onlyPublish(effects);
    expect(publish.routingKey).toBe(`${QUEUE}.retry.3`);
    expect(publish.options.headers).toMatchObject({ 'x-attempts': 3 });
  });

  it('dead-letters the failure of attempt maxAttempts', async () => {
    const { process, effects, attempts, metrics } = setup('fail');
    await process(ledgerDelivery({ 'x-attempts': 4 }));
    expect(attempts).toEqual([5]);
    expect(onlyPublish(effects)).toMatchObject({ exchange: 'ledger.dlx', routingKey: QUEUE });
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['dead_letter']);
  });

  it(`dead-letters a message delivered ${MAX_UNSETTLED_DELIVERIES} times unsettled without running its handler`, async () => {
    const { process, effects, attempts, idempotency } = setup('succeed');
    await process(ledgerDelivery({ 'x-delivery-count': MAX_UNSETTLED_DELIVERIES }));
    expect(attempts).toEqual([]);
    expect(idempotency.marked).toEqual([]);
    const publish = onlyPublish(effects);
    expect(publish.exchange).toBe('ledger.dlx');
    expect(publish.options.headers).toMatchObject({
      'x-exception-type': 'DeliveryLimitError',
      'x-exception-message': `delivery-limit: delivered ${MAX_UNSETTLED_DELIVERIES} times without being settled (a worker crashed or hung on it)`,
    });
    expect(publish.options.headers).not.toHaveProperty('x-delivery-count');
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
  });

  it('runs the handler of a message redelivered one time fewer than the limit', async () => {
    const { process, effects, attempts } = setup('succeed');
    await process(ledgerDelivery({ 'x-delivery-count': MAX_UNSETTLED_DELIVERIES - 1 }));
    expect(attempts).toEqual([MAX_UNSETTLED_DELIVERIES]);
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
  });
});

describe('MessageProcessor on a Redis Cluster', () => {
  const account = (tx: { accountId: string }): string => `account:${tx.accountId}`;

  it("puts the marker and the lock in the lock key's slot", async () => {
    const { process, locks, contexts, idempotency } = setup('succeed', {
      clustered: true,
      lockKey: account,
    });
    await process(ledgerDelivery({}));
    const tag = slotTagOf('account:acc-42');
    expect(locks.requests).toEqual([
      { key: `${tag}account:acc-42`, markerKey: `mp:processed:${tag}${QUEUE}:tx-0001` },
    ]);
    expect(contexts[0].lockKey).toBe(`${tag}account:acc-42`);
    expect(contexts[0].processedMarker?.slotTag).toBe(tag);
    expect(idempotency.marked).toEqual([`mp:processed:${tag}${QUEUE}:tx-0001`]);
  });

  it("puts them in the slot of the handler's effect.slotKey when it names one", async () => {
    const { process, contexts } = setup('succeed', {
      clustered: true,
      effect: 'redis-commit',
      lockKey: account,
      slotKey: (tx: { accountId: string }) => `ledger:balance:${tx.accountId}`,
    });
    await process(ledgerDelivery({}));
    const tag = slotTagOf('ledger:balance:acc-42');
    expect(contexts[0].lockKey).toBe(`${tag}account:acc-42`);
    expect(contexts[0].processedMarker?.key).toBe(`mp:processed:${tag}${QUEUE}:tx-0001`);
    expect(keySlot(contexts[0].processedMarker?.key ?? '')).toBe(keySlot('ledger:balance:acc-42'));
  });

  it('dead-letters without running the handler when slotKey throws', async () => {
    const { process, attempts, effects } = setup('succeed', {
      clustered: true,
      effect: 'redis-commit',
      lockKey: account,
      slotKey: () => {
        throw new Error('no account');
      },
    });
    await process(ledgerDelivery({}));
    expect(attempts).toEqual([]);
    const publish = onlyPublish(effects);
    expect(publish.exchange).toBe('ledger.dlx');
    expect(publish.options.headers).toMatchObject({ 'x-exception-type': 'InvalidLockKeyError' });
  });

  it('on one server, never calls slotKey and keeps the names untagged', async () => {
    const { process, contexts, effects } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: account,
      slotKey: () => {
        throw new Error('not to be called');
      },
    });
    await process(ledgerDelivery({}));
    expect(contexts[0].lockKey).toBe('account:acc-42');
    expect(contexts[0].processedMarker).toEqual({
      key: `mp:processed:${QUEUE}:tx-0001`,
      ttlSeconds: 60,
    });
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
  });
});

describe('MessageProcessor with a lock', () => {
  it('locks the messageId within its queue, checking the marker in the same call', async () => {
    const { process, locks, contexts, idempotency, effects } = setup('succeed', {
      lockKey: 'message-id',
    });
    await process(ledgerDelivery({}));
    expect(locks.requests).toEqual([
      { key: `msg:${QUEUE}:tx-0001`, markerKey: `mp:processed:${QUEUE}:tx-0001` },
    ]);
    expect(contexts[0].lockKey).toBe(`msg:${QUEUE}:tx-0001`);
    expect(contexts[0].fencingToken).toBe(locks.leases[0].fencingToken);
    expect(idempotency.marked).toEqual([`mp:processed:${QUEUE}:tx-0001`]);
    expect(locks.leases[0].released).toBe(true);
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
  });

  it("locks the handler's lockKey of the decoded payload", async () => {
    const { process, locks } = setup('succeed', {
      lockKey: (tx: { accountId: string }) => `account:${tx.accountId}`,
    });
    await process(ledgerDelivery({}));
    expect(locks.requests.map((r) => r.key)).toEqual(['account:acc-42']);
  });

  it.each<[string, (payload: never) => string]>([
    [
      'throws',
      () => {
        throw new Error('no account');
      },
    ],
    ['returns an empty key', () => ''],
    ['returns a non-string', () => 42 as unknown as string],
  ])('dead-letters without running the handler when lockKey %s', async (_label, lockKey) => {
    const { process, locks, attempts, effects } = setup('succeed', { lockKey });
    await process(ledgerDelivery({}));
    expect(locks.requests).toEqual([]);
    expect(attempts).toEqual([]);
    const publish = onlyPublish(effects);
    expect(publish.exchange).toBe('ledger.dlx');
    expect(publish.options.headers).toMatchObject({ 'x-exception-type': 'InvalidLockKeyError' });
  });

  it('acks a processed message as duplicate without running the handler', async () => {
    const { process, locks, attempts, effects, metrics } = setup('succeed', {
      lockKey: 'message-id',
    });
    locks.behaviour = 'processed';
    await process(ledgerDelivery({}));
    expect(attempts).toEqual([]);
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
    expect(metrics.outcomes).toEqual(['duplicate']);
  });

  it('parks a message whose lock stays busy, without spending an attempt', async () => {
    const { process, locks, attempts, effects, metrics } = setup('succeed', {
      lockKey: 'message-id',
    });
    locks.behaviour = 'busy';
    await process(ledgerDelivery({ 'x-attempts': 2 }));
    expect(attempts).toEqual([]);
    const publish = onlyPublish(effects);
    expect(publish).toMatchObject({ exchange: '', routingKey: `${QUEUE}.retry.1` });
    // the copy runs again as attempt 3, the attempt that could not start
    expect(publish.options.headers).toMatchObject({ 'x-attempts': 2 });
    expect(publish.options.expiration).toBe('1000');
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['requeue']);
  });

  it('retries (never acks) a message whose lock was lost while the handler ran', async () => {
    const { process, locks, idempotency, effects, metrics, contexts } = setup('succeed', {
      lockKey: 'message-id',
      during: () => locks.leases[0].lose(),
    });
    await process(ledgerDelivery({}));
    expect(contexts[0].signal.aborted).toBe(true);
    expect(idempotency.marked).toEqual([]);
    const publish = onlyPublish(effects);
    expect(publish.routingKey).toBe(`${QUEUE}.retry.1`);
    expect(publish.options.headers).toMatchObject({ 'x-exception-type': 'LockLostError' });
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['retry']);
    expect(locks.leases[0].released).toBe(true);
  });

  it('hands a message back at once when the consumer stops while it waits for its lock', async () => {
    const { process, locks, stop, attempts, effects } = setup('succeed', { lockKey: 'message-id' });
    locks.behaviour = 'wait-until-stopped';
    const done = process(ledgerDelivery({}));
    stop.abort(new Error('consumer stopping'));
    await done;
    expect(attempts).toEqual([]);
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
  });
});

describe('MessageProcessor with a redis-commit effect (the lock left to the commit)', () => {
  it('sends nothing before the handler; the fencing token is the one its commit minted', async () => {
    const { process, locks, contexts, idempotency, effects, metrics } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: (tx: { accountId: string }) => `account:${tx.accountId}`,
      commit: (ctx) => {
        expect(ctx.lock?.pending).toBe(true);
        expect(ctx.fencingToken).toBeUndefined();
        // what a RedisCommit does when its script took the lock and minted a token
        const lease = ctx.lock as MessageLease;
        lease.commitAnswered(lease.commitArgs(), '1764000000000042');
        return Promise.resolve();
      },
    });
    await process(ledgerDelivery({}));
    expect(locks.requests).toEqual([]);
    expect(contexts[0].lockKey).toBe('account:acc-42');
    expect(contexts[0].lock?.pending).toBe(false);
    expect(contexts[0].fencingToken).toBe(1_764_000_000_000_042);
    // the commit script wrote the marker
    expect(idempotency.marked).toEqual([]);
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
    expect(metrics.outcomes).toEqual(['ack']);
  });

  it('waits for a key held elsewhere and commits as the holder, then releases', async () => {
    const { process, locks, contexts, effects } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: 'message-id',
      commit: (ctx) => ctx.lock?.hold() ?? Promise.resolve(),
    });
    await process(ledgerDelivery({}));
    expect(locks.requests).toEqual([{ key: `msg:${QUEUE}:tx-0001`, markerKey: undefined }]);
    expect(contexts[0].fencingToken).toBe(locks.leases[0].fencingToken);
    expect(locks.leases[0].released).toBe(true);
    expect(effects.map((e) => e.kind)).toEqual(['ack']);
  });

  it('parks the message when the key stays busy past the wait, without spending an attempt', async () => {
    const { process, locks, effects, metrics } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: 'message-id',
      commit: (ctx) => ctx.lock?.hold() ?? Promise.resolve(),
    });
    locks.behaviour = 'busy';
    await process(ledgerDelivery({ 'x-attempts': 2 }));
    const publish = onlyPublish(effects);
    expect(publish).toMatchObject({ exchange: '', routingKey: `${QUEUE}.retry.1` });
    expect(publish.options.headers).toMatchObject({ 'x-attempts': 2 });
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['requeue']);
  });

  it('hands the message back when the consumer stops while its commit waits for the key', async () => {
    const { process, locks, stop, effects } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: 'message-id',
      commit: (ctx) => ctx.lock?.hold() ?? Promise.resolve(),
    });
    locks.behaviour = 'wait-until-stopped';
    const done = process(ledgerDelivery({}));
    stop.abort(new Error('consumer stopping'));
    await done;
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
  });

  it('retries (never acks) when the lock it held for the commit was lost', async () => {
    const { process, locks, contexts, effects, metrics } = setup('succeed', {
      effect: 'redis-commit',
      lockKey: 'message-id',
      commit: async (ctx) => {
        const signal = ctx.signal;
        await ctx.lock?.hold();
        locks.leases[0].lose();
        expect(signal.aborted).toBe(true);
      },
    });
    await process(ledgerDelivery({}));
    expect(contexts[0].lock?.lost).toBeInstanceOf(LockLostError);
    const publish = onlyPublish(effects);
    expect(publish.options.headers).toMatchObject({ 'x-exception-type': 'LockLostError' });
    expect(effects.map((e) => e.kind)).toEqual(['publish', 'ack']);
    expect(metrics.outcomes).toEqual(['retry']);
    expect(locks.leases[0].released).toBe(true);
  });
});
