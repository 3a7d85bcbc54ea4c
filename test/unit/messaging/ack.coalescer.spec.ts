import { describe, it, expect } from 'vitest';
import type { Message } from 'amqplib';
import { AckCoalescer } from '../../../src/messaging/ack.coalescer.js';
import { FakeChannel } from '../support/fake-channel.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('AckCoalescer', () => {
  function setup(): {
    broker: FakeChannel;
    acks: AckCoalescer;
    deliver: (tag: number) => Message;
  } {
    const broker = new FakeChannel();
    const acks = new AckCoalescer(broker.asChannel());
    const deliver = (tag: number): Message => {
      const message = broker.deliver();
      expect(message.fields.deliveryTag).toBe(tag);
      acks.track(message);
      return message;
    };
    return { broker, acks, deliver };
  }

  it('sends the acks of one turn as one multiple ack at its end', async () => {
    const { broker, acks, deliver } = setup();
    const messages = [1, 2, 3, 4, 5].map(deliver);
    for (const m of [messages[2], messages[0], messages[4], messages[1], messages[3]]) acks.ack(m);
    expect(broker.settlements).toEqual([]);
    await nextTurn();
    expect(broker.settlements).toEqual([{ op: 'ack', tag: 5, multiple: true }]);
    expect([...broker.acked].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(acks.outstanding).toBe(0);
  });

  it('acks deliveries behind an unsettled one one by one, in the same turn', async () => {
    const { broker, acks, deliver } = setup();
    const [m1, m2, m3, m4] = [1, 2, 3, 4].map(deliver);
    acks.ack(m1);
    acks.ack(m3);
    acks.ack(m4);
    await nextTurn();
    // 2 is still being processed: a multiple ack up to 3 or 4 would settle it
    expect(broker.settlements).toEqual([
      { op: 'ack', tag: 1, multiple: false },
      { op: 'ack', tag: 3, multiple: false },
      { op: 'ack', tag: 4, multiple: false },
    ]);
    expect(broker.outstanding).toEqual(new Set([2]));
    acks.ack(m2);
    await nextTurn();
    expect(broker.settlements.at(-1)).toEqual({ op: 'ack', tag: 2, multiple: false });
    expect(broker.outstanding.size).toBe(0);
    expect(acks.outstanding).toBe(0);
  });

  it('sends nacks at once, and a later multiple ack does not cover them', async () => {
    const { broker, acks, deliver } = setup();
    const [m1, m2, m3, m4] = [1, 2, 3, 4].map(deliver);
    acks.ack(m1);
    acks.nack(m2, false, false);
    acks.nack(m3, false, true);
    expect(broker.settlements).toEqual([
      { op: 'nack', tag: 2, multiple: false, requeue: false },
      { op: 'nack', tag: 3, multiple: false, requeue: true },
    ]);
    acks.ack(m4);
    await nextTurn();
    expect(broker.settlements.slice(2)).toEqual([{ op: 'ack', tag: 4, multiple: true }]);
    expect(broker.acked).toEqual(new Set([1, 4]));
    expect(broker.nacked).toEqual(new Set([2, 3]));
  });

  it('flush() sends what is due at once (before a channel is drained or closed)', () => {
    const { broker, acks, deliver } = setup();
    const [m1, m2] = [1, 2].map(deliver);
    acks.ack(m1);
    acks.ack(m2);
    acks.flush();
    expect(broker.settlements).toEqual([{ op: 'ack', tag: 2, multiple: true }]);
    acks.flush();
    expect(broker.settlements).toHaveLength(1);
  });

  it('says the channel closed once the consumer reports it, so no copy is published for nothing', () => {
    const { acks } = setup();
    expect(acks.closed).toBe(false);
    acks.channelClosed();
    expect(acks.closed).toBe(true);
  });

  it('passes an ack of a delivery it does not track straight through', () => {
    const { broker, acks } = setup();
    const stranger = broker.deliver();
    acks.ack(stranger);
    expect(broker.settlements).toEqual([{ op: 'ack', tag: 1, multiple: false }]);
  });

  it('reports a closed channel instead of throwing from the event loop', async () => {
    const broker = new FakeChannel();
    const errors: unknown[] = [];
    const acks = new AckCoalescer(broker.asChannel(), (error) => errors.push(error));
    const message = broker.deliver();
    acks.track(message);
    acks.ack(message);
    broker.closed = true;
    await nextTurn();
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toContain('Channel closed');
    expect(broker.outstanding).toEqual(new Set([1]));
  });

  it('settles exactly what was settled, whatever the order (random schedules)', async () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 50; round++) {
      const { broker, acks, deliver } = setup();
      const intended = new Map<number, 'ack' | 'nack'>();
      const pending: Message[] = [];
      let tag = 0;
      for (let turn = 0; turn < 30; turn++) {
        for (let i = Math.floor(random() * 5); i > 0; i--) pending.push(deliver(++tag));
        for (let i = Math.floor(random() * 6); i > 0 && pending.length > 0; i--) {
          const [message] = pending.splice(Math.floor(random() * pending.length), 1);
          const choice = random();
          const t = message.fields.deliveryTag;
          if (choice < 0.8) {
            intended.set(t, 'ack');
            acks.ack(message);
          } else {
            intended.set(t, 'nack');
            acks.nack(message, false, choice < 0.9);
          }
        }
        await nextTurn();
        // never settles a delivery still being processed
        for (const m of pending) expect(broker.outstanding.has(m.fields.deliveryTag)).toBe(true);
      }
      for (const [t, how] of intended) {
        expect(how === 'ack' ? broker.acked.has(t) : broker.nacked.has(t)).toBe(true);
      }
      expect(broker.outstanding.size).toBe(pending.length);
      expect(acks.outstanding).toBe(pending.length);
      const multiples = broker.settlements.filter((f) => f.op === 'ack' && f.multiple).length;
      expect(multiples).toBeGreaterThan(0);
    }
  });
});
