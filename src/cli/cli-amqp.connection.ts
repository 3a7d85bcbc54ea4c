import { once } from 'node:events';
import type { Channel, ChannelModel } from 'amqplib';
import { AmqpConnection, vhostOf } from '../messaging/amqp.connection.js';
import { MessagePublisher } from '../messaging/message.publisher.js';
import { CONNECTION_NAME_PREFIX } from './cli.constants.js';
import { ExchangeNotFoundError } from './cli.errors.js';

/** A broker that does not accept the connection within this time is reported, not waited for. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Long enough for a CLI: a broker that stops answering fails the run rather than stalling it. */
const CLI_PUBLISH_TIMEOUT_MS = 30_000;
const AMQP_NOT_FOUND = 404;

/** Where the CLI's connection and publisher report: stderr, one line each. */
const stderrLogger = {
  info: (): void => undefined,
  warn: (fields: object, message: string): void => {
    const err = (fields as { err?: unknown }).err;
    process.stderr.write(`${message}${err instanceof Error ? `: ${err.message}` : ''}\n`);
  },
};
const noMetrics = {
  setAmqpConnected: (): void => undefined,
  amqpReconnected: (): void => undefined,
  messagePublished: (): void => undefined,
};

/** The service's own connection and publisher, opened for one CLI run. */
export interface CliMessaging {
  /** The amqplib connection, for what the publisher does not do (basic.get, checks). */
  readonly model: ChannelModel;
  /** The service's publisher: confirms, mandatory returns and its typed errors. */
  readonly publisher: MessagePublisher;
  close(): Promise<void>;
}

/**
 * Connects to one broker URL as the service does (heartbeats, write coalescing), named
 * `message-processor <tool>` in the management UI, with the service's {@link MessagePublisher}
 * on it. Rejects with the broker's error when it refuses the connection or the URL is
 * unreachable, rather than retrying as the service would.
 */
export async function openCliMessaging(url: string, tool: string): Promise<CliMessaging> {
  const connection = new AmqpConnection(
    { urls: [url], heartbeatSeconds: 10, connectionName: `${CONNECTION_NAME_PREFIX} ${tool}` },
    noMetrics,
    stderrLogger,
  );
  try {
    await Promise.race([
      once(connection.manager, 'connect'),
      once(connection.manager, 'connectFailed').then((args) => {
        throw (args[0] as { err: Error }).err;
      }),
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error(`no answer from the broker within ${CONNECT_TIMEOUT_MS} ms`)),
          CONNECT_TIMEOUT_MS,
        ).unref(),
      ),
    ]);
  } catch (error) {
    await connection.close();
    throw error;
  }
  const model = connection.connection;
  if (!model) throw new Error('the broker connection closed right after it opened');
  const publisher = new MessagePublisher(
    connection,
    { publishTimeoutMs: CLI_PUBLISH_TIMEOUT_MS, publishBufferLimit: 0 },
    noMetrics,
    stderrLogger,
  );
  return {
    model,
    publisher,
    close: async () => {
      await publisher.close().catch(() => undefined);
      await connection.close();
    },
  };
}

/**
 * Throws `ExchangeNotFoundError` when `exchange` is missing. Checked on a throwaway channel because
 * a 404 closes the channel it happens on.
 */
export async function assertExchangeExists(
  model: ChannelModel,
  exchange: string,
  url: string,
  hint: string,
): Promise<void> {
  if (exchange === '') return;
  const exists = await withThrowawayChannel(model, async (channel) => {
    await channel.checkExchange(exchange);
  });
  if (!exists) throw new ExchangeNotFoundError(exchange, vhostOf(url), hint);
}

/** Ready messages in `queue`, or `undefined` when the queue does not exist. */
export async function queueDepth(model: ChannelModel, queue: string): Promise<number | undefined> {
  let depth: number | undefined;
  const exists = await withThrowawayChannel(model, async (channel) => {
    depth = (await channel.checkQueue(queue)).messageCount;
  });
  return exists ? depth : undefined;
}

/** Runs `use` on a fresh channel; `false` when the broker answered 404 NOT_FOUND. */
async function withThrowawayChannel(
  model: ChannelModel,
  use: (channel: Channel) => Promise<void>,
): Promise<boolean> {
  const channel = await model.createChannel();
  // A server-closed channel also emits 'error'; the rejected RPC below already reports it.
  channel.on('error', () => undefined);
  try {
    await use(channel);
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  await channel.close();
  return true;
}

function isNotFound(err: unknown): boolean {
  return err instanceof Error && 'code' in err && err.code === AMQP_NOT_FOUND;
}
