import type { Channel, Message } from 'amqplib';

/** What settling a delivery needs from its channel. */
export interface Settlement extends Pick<Channel, 'ack' | 'nack'> {
  /**
   * True once the channel closed: the broker has taken back every delivery not settled on it, so
   * a copy of one (a retry, a hand-back) would only add a duplicate.
   */
  readonly closed?: boolean;
}

type TagState = 'unsettled' | 'ack-due';

/**
 * Coalesces the acks of one channel: the acks settled in the same turn of the event loop go out
 * at its end, as ONE `basic.ack` with `multiple` for the longest run of oldest deliveries that
 * are all acked, and one each for the rest. On loopback each frame is a socket write that costs
 * about as much CPU as the message's own work; under load, dozens of acks become one.
 *
 * Never delays an ack beyond the current turn, so the prefetch window refills as before, and
 * never acks a delivery that was not acked: `multiple` covers only deliveries older than an
 * unsettled one. Nacks go out at once: the broker forgets them, so a later `multiple` ack over
 * their tags does not touch them.
 *
 * Delivery tags are per channel: one coalescer per channel, dropped with it. Acks still pending
 * when the channel dies are lost with it, like any unsent ack: the broker redelivers and the
 * processed marker absorbs the copies.
 */
export class AckCoalescer implements Settlement {
  /**
   * Deliveries not yet settled on the wire, by tag: tags grow on a channel, so the keys are in
   * delivery order. A tag leaves when its ack or nack is sent.
   */
  private readonly tags = new Map<number, TagState>();
  private readonly due = new Set<number>();
  private scheduled: NodeJS.Immediate | undefined;
  private isClosed = false;

  constructor(
    private readonly channel: Pick<Channel, 'ack' | 'nack'>,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** Every delivery must be tracked on arrival, or a `multiple` ack could cover it. */
  track(message: Message): void {
    this.tags.set(message.fields.deliveryTag, 'unsettled');
  }

  /** Deliveries tracked and not yet acked or nacked on the wire. */
  get outstanding(): number {
    return this.tags.size;
  }

  ack(message: Message, allUpTo?: boolean): void {
    if (allUpTo) throw new Error('AckCoalescer.ack: allUpTo is not supported');
    const tag = message.fields.deliveryTag;
    if (!this.tags.has(tag)) {
      // not tracked here (or settled twice): do not guess, send it as it is
      this.channel.ack(message);
      return;
    }
    this.tags.set(tag, 'ack-due');
    this.due.add(tag);
    this.scheduled ??= setImmediate(() => this.flush());
  }

  nack(message: Message, allUpTo?: boolean, requeue?: boolean): void {
    this.forget(message);
    this.channel.nack(message, allUpTo, requeue);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Called by the consumer when the channel closed. */
  channelClosed(): void {
    this.isClosed = true;
  }

  /** Sends every ack due now (also called before the channel is flushed or closed). */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    if (this.due.size === 0) return;
    let upTo: number | undefined;
    let run = 0;
    for (const [tag, state] of this.tags) {
      if (state === 'unsettled') break;
      this.tags.delete(tag);
      this.due.delete(tag);
      upTo = tag;
      run++;
    }
    try {
      // tags between the oldest and upTo that are not in the map were settled on the wire
      // already: the broker has forgotten them, so `multiple` does not touch them
      if (upTo !== undefined) this.channel.ack(tagged(upTo), run > 1);
      // behind an unsettled delivery: one ack each
      for (const tag of this.due) {
        this.tags.delete(tag);
        this.channel.ack(tagged(tag), false);
      }
    } catch (error) {
      // the channel closed: the broker redelivers what it did not get acked
      this.onError(error);
    }
    this.due.clear();
  }

  private forget(message: Message): void {
    const tag = message.fields.deliveryTag;
    this.tags.delete(tag);
    this.due.delete(tag);
  }
}

/** amqplib reads only the delivery tag of the message it is asked to ack. */
function tagged(deliveryTag: number): Message {
  return { fields: { deliveryTag } } as Message;
}
