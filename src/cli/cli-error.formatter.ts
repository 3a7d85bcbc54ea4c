import { inspect } from 'node:util';

/**
 * One line for an error, with every password of `urls` masked: driver messages can quote a URL,
 * and this output ends up in CI logs.
 */
export function describeCliError(err: unknown, urls: readonly string[]): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : messageOf(err);
  return passwordsOf(urls).reduce((out, secret) => out.split(secret).join('***'), text);
}

function passwordsOf(urls: readonly string[]): string[] {
  const secrets: string[] = [];
  for (const url of urls) {
    try {
      const { password, username, protocol } = new URL(url);
      // A Redis URL may carry a bare token as its user part (redis://token@host).
      for (const raw of [password, protocol.startsWith('redis') ? username : '']) {
        if (raw.length > 0) secrets.push(raw, decodeURIComponent(raw));
      }
    } catch {
      // not a URL: nothing to mask
    }
  }
  return secrets.filter((secret) => secret.length > 0);
}

/** The message of an Error, or a readable rendering of anything else that was thrown. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : inspect(err);
}
