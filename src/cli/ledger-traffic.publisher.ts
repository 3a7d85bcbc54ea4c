import type { ChannelModel, Options } from 'amqplib';
import {
  ConfirmWindowPublisher,
  type ReturnedMessage,
  type UnconfirmedMessage,
} from './confirm-window.publisher';
import type { LedgerTrafficPlan, PlannedMessage } from './ledger-traffic.plan';
import { TokenBucketLimiter } from './token-bucket.limiter';

/** Shown as `appId` on every message, so a dead letter says where it came from. */
const PUBLISHER_APP_ID = 'message-processor-publish-cli';

/** Where and how fast to publish a plan. */
export interface LedgerTrafficTarget {
  readonly exchange: string;
  readonly routingKey: string;
  /** Messages per second; unlimited when undefined. */
  readonly rate: number | undefined;
  readonly maxInFlight: number;
}

export interface LedgerTrafficResult {
  /** From the first publish to the last confirm. */
  readonly durationMs: number;
  readonly published: number;
  readonly acked: number;
  readonly returned: readonly ReturnedMessage[];
  readonly unconfirmed: readonly UnconfirmedMessage[];
  /** The messageIds the broker took (acked, not returned), for the expected balances. */
  readonly confirmedMessageIds: ReadonlySet<string>;
}

/**
 * Publishes the plan's first phase, waits for every confirm, then publishes the duplicates, so
 * each duplicate reaches the broker after its original was accepted.
 */
export async function publishLedgerTraffic(
  model: ChannelModel,
  plan: LedgerTrafficPlan,
  target: LedgerTrafficTarget,
  onSettled: () => void,
): Promise<LedgerTrafficResult> {
  const channel = await model.createConfirmChannel();
  const publisher = new ConfirmWindowPublisher(channel, {
    maxInFlight: target.maxInFlight,
    onSettled,
  });
  const limiter = target.rate === undefined ? undefined : new TokenBucketLimiter(target.rate);
  let published = 0;

  const started = performance.now();
  for (const phase of [plan.firstPhase, plan.duplicatePhase]) {
    for (const message of phase) {
      await limiter?.take();
      await publisher.publish({
        exchange: target.exchange,
        routingKey: target.routingKey,
        content: message.body,
        options: publishOptionsOf(message),
      });
      published++;
    }
    await publisher.waitForConfirms();
  }
  const durationMs = performance.now() - started;
  await publisher.close();

  return {
    durationMs,
    published,
    acked: publisher.ackedCount,
    returned: publisher.returned,
    unconfirmed: publisher.unconfirmed,
    confirmedMessageIds: publisher.confirmedMessageIds,
  };
}

function publishOptionsOf(message: PlannedMessage): Options.Publish {
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
