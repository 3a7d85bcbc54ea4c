import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import type { INestApplication } from '@nestjs/common';
import amqplib, { type ConfirmChannel } from 'amqplib';
import {
  MessagePublisher,
  PublishError,
  PublisherBufferFullError,
  PublishTimeoutError,
  UnroutableMessageError,
} from '../../src/messaging/index.js';
import { freePort } from './support/redis.server.js';
import { metricValue, readiness, startApp, waitUntilReady } from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TcpProxy } from './support/tcp.proxy.js';
import { waitFor } from './support/wait-for.js';

describe('publisher while the broker is unreachable', () => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await startApp({
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${await freePort()}`,
      PUBLISH_BUFFER_LIMIT: '1',
      PUBLISH_TIMEOUT_MS: '300',
    });
  });

  afterAll(async () => {
    await app?.close();
  });

  it('buffers up to the bound, then fails fast; a buffered publish times out', async () => {
    const publisher = app.get(MessagePublisher);
    const failed = await metricValue('messages_published_total', {
      exchange: 'ledger',
      outcome: 'failed',
    });
    const buffered = publisher.publish('ledger', 'transaction.created', { n: 1 });
    await expect(
      publisher.publish('ledger', 'transaction.created', { n: 2 }),
    ).rejects.toBeInstanceOf(PublisherBufferFullError);
    await expect(buffered).rejects.toBeInstanceOf(PublishTimeoutError);
    expect(
      await metricValue('messages_published_total', { exchange: 'ledger', outcome: 'failed' }),
    ).toBe(failed + 2);
    expect((await readiness(app)).status).toBe(503);
  });
});

describe('a conflicting existing queue declaration', () => {
  let vhost: TestVhost;
  let app: INestApplication;

  beforeAll(async () => {
    vhost = await TestVhost.create('conflict');
    // an operator created the queue as classic before this service (quorum by default) ran
    const connection = await amqplib.connect(vhost.url());
    const channel = await connection.createChannel();
    await channel.assertQueue('ledger.transactions', { durable: true });
    await connection.close();
    app = await startApp({ AMQP_URL: vhost.url() });
  });

  afterAll(async () => {
    await app?.close();
    await vhost?.delete();
  });

  it('keeps the service up and not-ready, naming the queue and the argument', async () => {
    const ready = await waitFor('readiness to report the conflict', async () => {
      const r = await readiness(app);
      const consumers = r.body.details.amqp?.consumers as
        { queue: string; error?: string }[] | undefined;
      return consumers?.[0]?.error ? r : undefined;
    });
    expect(ready.status).toBe(503);
    const [consumer] = ready.body.details.amqp.consumers as {
      queue: string;
      attached: boolean;
      error: string;
    }[];
    expect(consumer.attached).toBe(false);
    expect(consumer.error).toContain('"ledger.transactions"');
    expect(consumer.error).toContain('"x-queue-type"');
    expect(ready.body.details.amqp.connected).toBe(true);
  });
});

describe('a publish the broker refuses (an exchange that does not exist)', () => {
  let vhost: TestVhost;
  let app: INestApplication;

  beforeAll(async () => {
    vhost = await TestVhost.create('refused');
    app = await startApp({ AMQP_URL: vhost.url(), PUBLISH_TIMEOUT_MS: '5000' });
    await waitUntilReady(app);
  });

  afterAll(async () => {
    await app?.close();
    await vhost?.delete();
  });

  it('fails that publish at once and keeps the connection, the consumers and the publisher working', async () => {
    const publisher = app.get(MessagePublisher);
    const reconnects = await metricValue('amqp_reconnects_total');
    const started = performance.now();
    await expect(publisher.publish('no-such-exchange', 'k', { n: 1 })).rejects.toBeInstanceOf(
      PublishError,
    );
    // the channel's refusal, not the publish timeout
    expect(performance.now() - started).toBeLessThan(5_000);
    // a fresh channel takes the next publish; the connection (and every consumer on it) stayed
    await waitFor('a publish confirmed on the new channel', () =>
      publisher.publish('ledger', 'transaction.created', { n: 2 }).then(
        () => true,
        () => false,
      ),
    );
    expect(await metricValue('amqp_reconnects_total')).toBe(reconnects);
    expect((await readiness(app)).status).toBe(200);
  });
});

describe('a confirmed publish', () => {
  let vhost: TestVhost;
  let app: INestApplication;

  beforeAll(async () => {
    vhost = await TestVhost.create('confirmed');
    app = await startApp({ AMQP_URL: vhost.url() });
    await waitUntilReady(app);
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await app?.close();
    await vhost?.delete();
  });

  it('is not kept alive by its confirm callback, which amqplib may hold after the confirm', async () => {
    // amqplib's confirm channel class, from a channel of its own (the package exports no class)
    const connection = await amqplib.connect(vhost.url());
    const proto = Object.getPrototypeOf(await connection.createConfirmChannel()) as ConfirmChannel;
    await connection.close();
    // the young generation's GC can keep a confirm callback alive past its confirm (it promotes
    // even amqplib's own empty ones); here they are held for good
    const held: { messageId: unknown; callback: unknown }[] = [];
    const publish = Reflect.get<ConfirmChannel, 'publish'>(proto, 'publish');
    vi.spyOn(proto, 'publish').mockImplementation(function (
      this: ConfirmChannel,
      ...args: Parameters<ConfirmChannel['publish']>
    ) {
      held.push({ messageId: args[3]?.messageId, callback: args[4] });
      return Reflect.apply<ConfirmChannel, typeof args, boolean>(publish, this, args);
    });
    const publisher = app.get(MessagePublisher);
    // confirmed, and referenced by nothing of the test's once this returns
    const confirmed = async (): Promise<WeakRef<Promise<unknown>>> => {
      const pending = publisher.publish(
        'ledger',
        'transaction.created',
        { n: 1 },
        { messageId: 'kept-alive-probe' },
      );
      await pending;
      return new WeakRef(pending);
    };
    const publishPromise = await confirmed();
    // other publishes of the process may be held too; ours must be among them
    expect(held.filter((h) => h.messageId === 'kept-alive-probe')).toHaveLength(1);
    // a WeakRef keeps its target until the job that made it ends
    await new Promise((resolve) => setImmediate(resolve));
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
    expect(publishPromise.deref()).toBeUndefined();
  });
});

describe('a connected broker that stops answering, then goes away', () => {
  let vhost: TestVhost;
  let proxy: TcpProxy;
  let app: INestApplication;

  beforeAll(async () => {
    vhost = await TestVhost.create('stalled');
    proxy = await TcpProxy.start(5672);
    app = await startApp({ AMQP_URL: vhost.url(proxy.port), PUBLISH_TIMEOUT_MS: '300' });
    await waitUntilReady(app);
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.cut();
    await vhost?.delete();
  });

  it('matches returns by route when one messageId goes to two routes at once', async () => {
    const publisher = app.get(MessagePublisher);
    const [routable, unroutable] = await Promise.allSettled([
      publisher.publish('ledger', 'transaction.created', { n: 1 }, { messageId: 'same-id' }),
      publisher.publish('ledger', 'no.queue.bound', { n: 2 }, { messageId: 'same-id' }),
    ]);
    expect(routable.status).toBe('fulfilled');
    expect(unroutable.status).toBe('rejected');
    expect((unroutable as PromiseRejectedResult).reason).toBeInstanceOf(UnroutableMessageError);
  });

  it('fails a publish without a messageId that no queue takes, as one with', async () => {
    const publisher = app.get(MessagePublisher);
    const body = Buffer.from('{"n":6}');
    // the older one is not mandatory: the broker drops it and returns only the newer one
    const [dropped, returned] = await Promise.allSettled([
      publisher.publishRaw('ledger', 'no.queue.bound', body, { mandatory: false }),
      publisher.publishRaw('ledger', 'no.queue.bound', body),
    ]);
    expect(dropped.status).toBe('fulfilled');
    expect(returned.status).toBe('rejected');
    expect((returned as PromiseRejectedResult).reason).toBeInstanceOf(UnroutableMessageError);
    await expect(
      publisher.publishRaw('ledger', 'transaction.created', body),
    ).resolves.toBeUndefined();
  });

  it('fails an unroutable publish the channel wrapper buffered (an exchange being declared)', async () => {
    const publisher = app.get(MessagePublisher);
    // while an exchange is declared, publishes wait in amqp-connection-manager's wrapper
    const declared = publisher.declareExchange('audit-events');
    const [unroutable, routable] = await Promise.allSettled([
      publisher.publish('ledger', 'no.queue.bound', { n: 7 }),
      publisher.publish('ledger', 'transaction.created', { n: 8 }),
    ]);
    await declared;
    expect(unroutable.status).toBe('rejected');
    expect((unroutable as PromiseRejectedResult).reason).toBeInstanceOf(UnroutableMessageError);
    expect(routable.status).toBe('fulfilled');
  });

  it('fails a publish left unconfirmed at its timeout, and one cut off by the connection at once', async () => {
    const publisher = app.get(MessagePublisher);
    // connected and idle: these go straight onto the confirm channel
    await publisher.publish('ledger', 'transaction.created', { n: 3 });
    const failed = await metricValue('messages_published_total', {
      exchange: 'ledger',
      outcome: 'failed',
    });
    proxy.stall();
    await expect(
      publisher.publish('ledger', 'transaction.created', { n: 4 }),
    ).rejects.toBeInstanceOf(PublishTimeoutError);
    // a long timeout: only the connection's end can fail it
    const cutOff = publisher.publish(
      'ledger',
      'transaction.created',
      { n: 5 },
      { timeoutMs: 600_000 },
    );
    await proxy.cut();
    const reason: unknown = await cutOff.then(
      () => 'confirmed',
      (error: unknown) => error,
    );
    expect(reason).toBeInstanceOf(PublishError);
    expect(reason).not.toBeInstanceOf(PublishTimeoutError);
    expect(
      await metricValue('messages_published_total', { exchange: 'ledger', outcome: 'failed' }),
    ).toBe(failed + 2);
  });
});
