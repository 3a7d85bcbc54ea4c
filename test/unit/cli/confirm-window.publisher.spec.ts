import { EventEmitter } from 'node:events';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import {
  ConfirmWindowPublisher,
  type OutgoingMessage,
} from '../../../src/cli/confirm-window.publisher';

type ConfirmCallback = (err: unknown) => void;

/** Records publishes; the test decides when the broker acks, nacks, returns or closes. */
class FakeConfirmChannel extends EventEmitter {
  readonly published: { options: Options.Publish; callback: ConfirmCallback | undefined }[] = [];
  accepting = true;
  private closed = false;

  publish(
    _exchange: string,
    _routingKey: string,
    _content: Buffer,
    options: Options.Publish,
    callback?: ConfirmCallback,
  ): boolean {
    if (this.closed) throw new Error('Channel closed');
    this.published.push({ options, callback });
    return this.accepting;
  }

  ack(index: number): void {
    this.published[index].callback?.(null);
  }

  nack(index: number): void {
    this.published[index].callback?.(new Error('message nacked'));
  }

  returnMessage(index: number): void {
    const returned: Message = {
      content: Buffer.alloc(0),
      fields: {
        deliveryTag: 0,
        redelivered: false,
        exchange: 'ledger',
        routingKey: 'nowhere',
        ...{ replyCode: 312, replyText: 'NO_ROUTE' },
      },
      properties: { messageId: this.published[index].options.messageId } as Message['properties'],
    };
    this.emit('return', returned);
  }

  /** Like amqplib: unconfirmed callbacks get an error, then 'close' is emitted. */
  closeByBroker(unconfirmed: number[]): void {
    this.closed = true;
    for (const index of unconfirmed) this.published[index].callback?.(new Error('channel closed'));
    this.emit('close');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.emit('close');
    return Promise.resolve();
  }
}

function message(messageId: string): OutgoingMessage {
  return {
    exchange: 'ledger',
    routingKey: 'transaction.created',
    content: Buffer.from('{}'),
    options: { messageId, mandatory: true },
  };
}

/** Lets pending promise callbacks run, then says whether `promise` has settled. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

function setup(maxInFlight: number) {
  const channel = new FakeConfirmChannel();
  let settledCount = 0;
  const publisher = new ConfirmWindowPublisher(channel as unknown as ConfirmChannel, {
    maxInFlight,
    onSettled: () => settledCount++,
  });
  return { channel, publisher, settled: () => settledCount };
}

describe('ConfirmWindowPublisher', () => {
  it('waits for a confirm once the window is full', async () => {
    const { channel, publisher } = setup(2);
    await publisher.publish(message('a'));
    await publisher.publish(message('b'));
    const third = publisher.publish(message('c'));
    expect(await isSettled(third)).toBe(false);
    expect(channel.published).toHaveLength(2);

    channel.ack(0);
    expect(await isSettled(third)).toBe(true);
    expect(channel.published).toHaveLength(3);
  });

  it("waits for the channel's drain when its buffer is full", async () => {
    const { channel, publisher } = setup(100);
    channel.accepting = false;
    const first = publisher.publish(message('a'));
    expect(await isSettled(first)).toBe(false);
    channel.emit('drain');
    expect(await isSettled(first)).toBe(true);
  });

  it('resolves waitForConfirms only when every publish is settled, and counts outcomes', async () => {
    const { channel, publisher, settled } = setup(10);
    for (const id of ['a', 'b', 'c']) await publisher.publish(message(id));
    const done = publisher.waitForConfirms();
    channel.ack(0);
    channel.nack(1);
    expect(await isSettled(done)).toBe(false);
    channel.ack(2);
    expect(await isSettled(done)).toBe(true);
    expect(settled()).toBe(3);
    expect([...publisher.confirmedMessageIds]).toEqual(['a', 'c']);
    expect(publisher.unconfirmed).toEqual([{ messageId: 'b', reason: 'message nacked' }]);
  });

  it('does not count a returned (unroutable) message as confirmed, though the broker acks it', async () => {
    const { channel, publisher } = setup(10);
    await publisher.publish(message('a'));
    await publisher.publish(message('b'));
    channel.returnMessage(0);
    channel.ack(0);
    channel.ack(1);
    await publisher.waitForConfirms();
    expect([...publisher.confirmedMessageIds]).toEqual(['b']);
    expect(publisher.returned).toEqual([
      { messageId: 'a', exchange: 'ledger', routingKey: 'nowhere', reply: '312 NO_ROUTE' },
    ]);
    expect(publisher.ackedCount).toBe(2);
  });

  it('records in-flight messages lost with a closed channel and refuses to publish more', async () => {
    const { channel, publisher } = setup(1);
    await publisher.publish(message('a'));
    const blocked = publisher.publish(message('b'));
    channel.closeByBroker([0]);
    await expect(blocked).rejects.toThrow('channel closed');
    await publisher.waitForConfirms();
    expect(publisher.unconfirmed).toEqual([{ messageId: 'a', reason: 'channel closed' }]);
    await expect(publisher.publish(message('c'))).rejects.toThrow('channel closed');
  });
});
