import type { MessagePublisher, PublishOptions } from '../messaging/message.publisher.js';
import { UnroutableMessageError } from '../messaging/messaging.errors.js';
import type { LedgerTrafficPlan, PlannedMessage } from './ledger-traffic.plan.js';
import { TokenBucketLimiter } from './token-bucket.limiter.js';

/** Shown as `appId` on every message, so a dead letter says where it came from. */
const PUBLISHER_APP_ID = 'message-processor-publish-cli';

/** Where and how fast to publish a plan. */
export interface LedgerTrafficTarget {
  readonly exchange: string;
  readonly routingKey: string;
  /** Messages per second; unlimited when undefined. */
  readonly rate: number | undefined;
  /** Publishes awaiting their confirm at once; the next waits for one of them. */
  readonly maxInFlight: number;
}

/** A message the broker handed back because no queue was bound for its routing key. */
export interface ReturnedMessage {
  readonly messageId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly reply: string;
}

/** A publish the broker nacked, or that was not confirmed in time. */
export interface UnconfirmedMessage {
  readonly messageId: string | undefined;
  readonly reason: string;
}

export interface LedgerTrafficResult {
  /** From the first publish to the last confirm. */
  readonly durationMs: number;
  readonly published: number;
  /** Acked by the broker, returned ones included (it acks what it could not route). */
  readonly acked: number;
  readonly returned: readonly ReturnedMessage[];
  readonly unconfirmed: readonly UnconfirmedMessage[];
  /** The messageIds the broker took (acked, not returned), for the expected balances. */
  readonly confirmedMessageIds: ReadonlySet<string>;
}

/**
 * Publishes the plan's first phase through the service's publisher, with up to `maxInFlight`
 * confirms outstanding, waits for every confirm, then publishes the duplicates, so each
 * duplicate reaches the broker after its original was accepted.
 */
export async function publishLedgerTraffic(
  publisher: MessagePublisher,
  plan: LedgerTrafficPlan,
  target: LedgerTrafficTarget,
  onSettled: () => void,
): Promise<LedgerTrafficResult> {
  const limiter = target.rate === undefined ? undefined : new TokenBucketLimiter(target.rate);
  const confirmedMessageIds = new Set<string>();
  const returned: ReturnedMessage[] = [];
  const unconfirmed: UnconfirmedMessage[] = [];
  const inFlight = new Set<Promise<void>>();
  let published = 0;
  let acked = 0;

  const send = (message: PlannedMessage): Promise<void> =>
    publisher
      .publishRaw(target.exchange, target.routingKey, message.body, publishOptionsOf(message))
      .then(
        () => {
          acked++;
          if (message.messageId !== undefined) confirmedMessageIds.add(message.messageId);
        },
        (error: unknown) => {
          const { messageId } = message;
          if (error instanceof UnroutableMessageError) {
            acked++;
            returned.push({ messageId, ...target, reply: error.message });
          } else {
            unconfirmed.push({ messageId, reason: (error as Error).message });
          }
        },
      )
      .finally(onSettled);

  const started = performance.now();
  for (const phase of [plan.firstPhase, plan.duplicatePhase]) {
    for (const message of phase) {
      await limiter?.take();
      while (inFlight.size >= target.maxInFlight) await Promise.race(inFlight);
      const sending = send(message).finally(() => inFlight.delete(sending));
      inFlight.add(sending);
      published++;
    }
    await Promise.all(inFlight);
  }
  return {
    durationMs: performance.now() - started,
    published,
    acked,
    returned,
    unconfirmed,
    confirmedMessageIds,
  };
}

function publishOptionsOf(message: PlannedMessage): PublishOptions {
  return {
    ...(message.messageId === undefined ? {} : { messageId: message.messageId }),
    correlationId: message.correlationId,
    contentType: message.contentType,
    persistent: true,
    mandatory: true,
    // AMQP timestamps are whole seconds.
    timestamp: Math.floor(Date.now() / 1000),
    appId: PUBLISHER_APP_ID,
  };
}
