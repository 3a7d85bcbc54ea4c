import { connect, type Channel, type ChannelModel } from 'amqplib';
import { vhostOf } from '../messaging/amqp.connection';
import { CONNECTION_NAME_PREFIX } from './cli.constants';
import { ExchangeNotFoundError } from './cli.errors';

/** amqplib gives up on a broker that does not answer the TCP connect within this time. */
const CONNECT_TIMEOUT_MS = 10_000;
const AMQP_NOT_FOUND = 404;

/** Opens one connection, named `message-processor <tool>` in the management UI. */
export async function connectForCli(url: string, tool: string): Promise<ChannelModel> {
  return connect(url, {
    timeout: CONNECT_TIMEOUT_MS,
    // amqplib leaves Nagle on: an RPC written right after an ack (basic.get, checkQueue) then
    // waits for the broker's delayed TCP ACK, measured at ~44 ms per message here instead of ~2.
    noDelay: true,
    clientProperties: { connection_name: `${CONNECTION_NAME_PREFIX} ${tool}` },
  });
}

/**
 * Throws `ExchangeNotFoundError` when `exchange` is missing. Checked on a throwaway channel because
 * a 404 closes the channel it happens on, and publishing to a missing exchange would close ours.
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
