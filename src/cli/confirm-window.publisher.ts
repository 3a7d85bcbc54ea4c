import type { ConfirmChannel, Message, Options } from 'amqplib';
import { messageOf } from './cli-error.formatter';

/** One message to publish. */
export interface OutgoingMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  /** Passed to amqplib as is; set `mandatory: true` to learn about unroutable messages. */
  readonly options: Options.Publish;
}

/** A message the broker handed back because no queue was bound for its routing key. */
export interface ReturnedMessage {
  readonly messageId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly reply: string;
}

/** A publish the broker nacked, or whose channel closed before the confirm. */
export interface UnconfirmedMessage {
  readonly messageId: string | undefined;
  readonly reason: string;
}

export interface ConfirmWindowOptions {
  /** Publishes awaiting a confirm at once; `publish` waits for a slot beyond this. */
  readonly maxInFlight: number;
  /** Called once per publish when its confirm (or failure) arrives. */
  readonly onSettled?: () => void;
}

/**
 * Publishes on a confirm channel with a bounded window of unconfirmed messages, honouring the
 * channel's back-pressure (`publish` returning false → wait for `drain`). Counts acks, nacks and
 * mandatory returns; remembers which messageIds the broker really took.
 */
export class ConfirmWindowPublisher {
  /** Acked by the broker and not returned. */
  readonly confirmedMessageIds = new Set<string>();
  readonly returned: ReturnedMessage[] = [];
  readonly unconfirmed: UnconfirmedMessage[] = [];
  private acked = 0;
  private inFlight = 0;
  private closed = false;
  private channelError: Error | undefined;
  /** Returned messages whose ack has not arrived yet (a return always precedes its ack). */
  private readonly pendingReturns = new Map<string, number>();
  private wake: (() => void) | undefined;

  constructor(
    private readonly channel: ConfirmChannel,
    private readonly options: ConfirmWindowOptions,
  ) {
    channel.on('return', (message: Message) => this.onReturn(message));
    channel.on('error', (err: Error) => {
      this.channelError = err;
    });
    channel.on('close', () => {
      this.closed = true;
      this.wakeUp();
    });
  }

  /** Acked publishes, including returned ones (the broker acks a message it could not route). */
  get ackedCount(): number {
    return this.acked;
  }

  /** Resolves once the message is handed to the channel (not confirmed: see `waitForConfirms`). */
  async publish(message: OutgoingMessage): Promise<void> {
    while (this.inFlight >= this.options.maxInFlight && !this.closed) await this.nextWake();
    this.throwIfClosed();
    const messageId =
      typeof message.options.messageId === 'string' ? message.options.messageId : undefined;
    const accepted = this.channel.publish(
      message.exchange,
      message.routingKey,
      message.content,
      message.options,
      (err: unknown) => this.onConfirm(messageId, err),
    );
    this.inFlight++;
    if (!accepted) await this.drained();
  }

  /** Resolves when every publish so far has been confirmed, nacked or lost with the channel. */
  async waitForConfirms(): Promise<void> {
    while (this.inFlight > 0 && !this.closed) await this.nextWake();
  }

  /** Closes the channel unless the broker already did. */
  async close(): Promise<void> {
    if (!this.closed) await this.channel.close();
  }

  private onConfirm(messageId: string | undefined, err: unknown): void {
    this.inFlight--;
    if (err !== null && err !== undefined) {
      const reason = messageOf(err);
      this.unconfirmed.push({ messageId, reason });
    } else {
      this.acked++;
      if (messageId !== undefined && !this.takePendingReturn(messageId)) {
        this.confirmedMessageIds.add(messageId);
      }
    }
    this.options.onSettled?.();
    this.wakeUp();
  }

  private onReturn(message: Message): void {
    const fields: Readonly<Record<string, unknown>> = { ...message.fields };
    const messageId: unknown = message.properties.messageId;
    const id = typeof messageId === 'string' ? messageId : undefined;
    if (id !== undefined) this.pendingReturns.set(id, (this.pendingReturns.get(id) ?? 0) + 1);
    this.returned.push({
      messageId: id,
      exchange: message.fields.exchange,
      routingKey: message.fields.routingKey,
      reply: `${String(fields.replyCode)} ${String(fields.replyText)}`,
    });
  }

  private takePendingReturn(messageId: string): boolean {
    const pending = this.pendingReturns.get(messageId);
    if (pending === undefined) return false;
    if (pending > 1) this.pendingReturns.set(messageId, pending - 1);
    else this.pendingReturns.delete(messageId);
    return true;
  }

  private throwIfClosed(): void {
    if (this.closed) {
      throw new Error(
        `channel closed: ${this.channelError?.message ?? 'by the broker or the connection'}`,
      );
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.channel.off('drain', done);
        this.channel.off('close', done);
        resolve();
      };
      this.channel.on('drain', done);
      this.channel.on('close', done);
    });
  }

  private nextWake(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
