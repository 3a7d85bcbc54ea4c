import type { Channel, GetMessage, Options } from 'amqplib';
import { vhostOf } from '../messaging/amqp.connection.js';
import type { PublishOptions } from '../messaging/message.publisher.js';
import { UnroutableMessageError } from '../messaging/messaging.errors.js';
import { messageOf } from './cli-error.formatter.js';
import { assertExchangeExists, type CliMessaging, queueDepth } from './cli-amqp.connection.js';
import { ExchangeNotFoundError, QueueNotFoundError } from './cli.errors.js';
import type { DlqReplayOptions } from './dlq-replay.args.js';
import {
  keptPublishOptions,
  matchesExceptionType,
  replayPublishOptions,
  replayTargetOf,
  summarizeDeadLetter,
  type DeadLetterSummary,
  type ReplayTarget,
} from './dlq-replay.message.js';

export interface DlqReplayHooks {
  /** Stops after the message in hand (Ctrl-C). */
  readonly signal: AbortSignal;
  /** The user the connection authenticates as (see `replayPublishOptions`). */
  readonly publishingUser: string;
  /** Called with the number of dead letters to examine, before the first one. */
  readonly onStart?: (budget: number) => void;
  /** Called after each dead letter examined. */
  readonly onExamined?: () => void;
}

export interface ReplayFailure {
  readonly message: DeadLetterSummary;
  readonly error: Error;
}

export interface DlqReplayResult {
  /** Ready messages in the DLQ when the run started. */
  readonly depthAtStart: number;
  readonly examined: number;
  /** Republished, confirmed, and acked on the DLQ (empty on a dry run). */
  readonly moved: readonly DeadLetterSummary[];
  /** On a dry run: the dead letters that would have been moved. */
  readonly wouldMove: readonly DeadLetterSummary[];
  /** Not matching `--exception-type`; kept in the DLQ. */
  readonly skipped: number;
  /** Dead letters whose copy was not confirmed; all were kept in the DLQ. */
  readonly failures: readonly ReplayFailure[];
  /** A failure that dooms the next publishes too (nack, timeout, closed channel) ended the run. */
  readonly stoppedByFailure: boolean;
  readonly interrupted: boolean;
  /**
   * Dead letters kept by a requeueing nack because even their copy back to the DLQ failed: the
   * only way this tool returns a message that RabbitMQ up to 4.2 counts as a delivery.
   */
  readonly returnedUnconfirmed: number;
}

/**
 * Moves dead letters from `options.dlq` back to their original exchange and routing key. Reads at
 * most the depth found at start (or `--limit`) with basic.get; each copy is published with confirm
 * + mandatory, one at a time, and the dead letter is acked only after its copy was confirmed.
 *
 * A dead letter that stays (filtered out, dry run, its replay not confirmed) is kept the same way:
 * a confirmed copy goes back to the end of the DLQ, then the one read is acked. Never a requeueing
 * nack: RabbitMQ up to 4.2 counts each as a delivery, and a quorum DLQ with a delivery limit (4.x
 * gives one of 20 by default) drops a message past it. Copies go behind every message read this
 * run (which reads no more than the depth at start), so none is read twice.
 */
export async function replayDeadLetters(
  { model, publisher }: Pick<CliMessaging, 'model' | 'publisher'>,
  options: DlqReplayOptions,
  hooks: DlqReplayHooks,
): Promise<DlqReplayResult> {
  const depthAtStart = await queueDepth(model, options.dlq);
  if (depthAtStart === undefined) throw new QueueNotFoundError(options.dlq, vhostOf(options.url));
  const budget = Math.min(depthAtStart, options.limit ?? depthAtStart);
  hooks.onStart?.(budget);

  const getChannel = await model.createChannel();
  let getChannelClosed = false;
  getChannel.on('close', () => {
    getChannelClosed = true;
  });
  // The failing operation reports the error; without a listener an 'error' event would crash us.
  getChannel.on('error', () => undefined);
  const publish = (target: ReplayTarget, message: GetMessage, props: Options.Publish) =>
    publisher.publishRaw(target.exchange, target.routingKey, message.content, asPublish(props));
  const exchangeChecks = new Map<string, Promise<void>>();
  const unconfirmed: GetMessage[] = [];
  const moved: DeadLetterSummary[] = [];
  const wouldMove: DeadLetterSummary[] = [];
  let examined = 0;
  let skipped = 0;
  const failures: ReplayFailure[] = [];
  let stoppedByFailure = false;

  /** Keeps a dead letter: a confirmed copy at the end of the DLQ, then the ack of the one read. */
  const keep = async (message: GetMessage): Promise<boolean> => {
    try {
      const kept = { exchange: '', routingKey: options.dlq };
      await publish(kept, message, keptPublishOptions(message, hooks.publishingUser));
    } catch {
      unconfirmed.push(message);
      return false;
    }
    getChannel.ack(message);
    return true;
  };

  try {
    while (examined < budget && !hooks.signal.aborted) {
      const message = await getChannel.get(options.dlq, { noAck: false });
      if (message === false) break;
      examined++;
      const target = replayTargetOf(message, options.queue, options.direct);
      const summary = summarizeDeadLetter(message, target);

      if (!matchesExceptionType(message, options.exceptionType)) {
        skipped++;
        if (!(await keep(message))) break;
      } else if (options.dryRun) {
        wouldMove.push(summary);
        if (!(await keep(message))) break;
      } else {
        try {
          const check =
            exchangeChecks.get(target.exchange) ??
            assertExchangeExists(
              model,
              target.exchange,
              options.url,
              'recreate it, or replay with --direct to publish straight to the queue',
            );
          exchangeChecks.set(target.exchange, check);
          await check;
          await publish(
            target,
            message,
            replayPublishOptions(message, new Date(), hooks.publishingUser, options.queue),
          );
        } catch (err) {
          failures.push({
            message: summary,
            error: err instanceof Error ? err : new Error(messageOf(err)),
          });
          if (!(await keep(message))) break;
          // An unroutable key or a deleted exchange concerns this message only; anything else
          // (nack, timeout, closed channel) would fail the next publishes too.
          if (err instanceof UnroutableMessageError || err instanceof ExchangeNotFoundError) {
            hooks.onExamined?.();
            continue;
          }
          stoppedByFailure = true;
          break;
        }
        getChannel.ack(message);
        moved.push(summary);
      }
      hooks.onExamined?.();
    }
  } finally {
    // On a closed channel the broker has already taken back every unacked message.
    if (!getChannelClosed) {
      for (const message of unconfirmed) getChannel.nack(message, false, true);
      await settleAndClose(getChannel, options.dlq);
    }
  }

  return {
    depthAtStart,
    examined,
    moved,
    wouldMove,
    skipped,
    failures,
    stoppedByFailure: stoppedByFailure || unconfirmed.length > 0,
    interrupted: hooks.signal.aborted && examined < budget,
    returnedUnconfirmed: unconfirmed.length,
  };
}

/**
 * Acks and nacks are fire-and-forget: a channel closed right after them can lose some, and the
 * broker would then redeliver them. A round trip first proves they reached the broker.
 */
async function settleAndClose(channel: Channel, queue: string): Promise<void> {
  try {
    await channel.checkQueue(queue);
    await channel.close();
  } catch {
    // The channel or connection is already gone: the broker requeues whatever was unsettled.
  }
}

/** amqplib's publish options as the service's publisher takes them (mandatory: returns fail). */
function asPublish(props: Options.Publish): PublishOptions {
  const { mandatory, ...rest } = props;
  return { ...rest, mandatory: mandatory === true };
}
