/** A bad command line or environment value; the CLI prints the message and its usage, exits 2. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

/** The target exchange does not exist in the vhost, so publishing would close the channel. */
export class ExchangeNotFoundError extends Error {
  override readonly name = 'ExchangeNotFoundError';

  /** @param hint how to fix it, in the words of the calling command */
  constructor(
    readonly exchange: string,
    readonly vhost: string,
    hint: string,
    options?: ErrorOptions,
  ) {
    super(`exchange "${exchange}" does not exist in vhost "${vhost}": ${hint}`, options);
  }
}

/** The queue does not exist in the vhost. */
export class QueueNotFoundError extends Error {
  override readonly name = 'QueueNotFoundError';

  constructor(
    readonly queue: string,
    readonly vhost: string,
    options?: ErrorOptions,
  ) {
    super(
      `queue "${queue}" does not exist in vhost "${vhost}": check --queue and the vhost in --url`,
      options,
    );
  }
}
