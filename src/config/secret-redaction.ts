import { haUrlSecrets, redactHaUrl, redisUrlKind } from './redis-url.js';

const REDACTED = '***';

/**
 * Returns the URL with its password (and a bare token in the user part) replaced by `***`,
 * so it can be logged, put in a metric label or a health body. Never throws: an unparsable
 * URL is reduced to its scheme.
 */
export function redactUrl(url: string): string {
  if (redisUrlKind(url) !== 'server') return redactHaUrl(url, REDACTED);
  try {
    const parsed = new URL(url);
    // "user:pw@host" parses with "user:" as its scheme and the password in the path
    if (!parsed.host) return `${parsed.protocol}//${REDACTED}`;
    if (parsed.password) parsed.password = REDACTED;
    else if (parsed.username && parsed.protocol.startsWith('redis')) parsed.username = REDACTED;
    return parsed.toString();
  } catch {
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? '';
    return `${scheme}//${REDACTED}`;
  }
}

/** The passwords (and Redis tokens) found in a list of URLs, decoded, for scrubbing free text. */
export function secretsOf(urls: readonly string[]): string[] {
  const secrets = new Set<string>();
  for (const url of urls) {
    if (redisUrlKind(url) !== 'server') {
      for (const secret of haUrlSecrets(url)) secrets.add(secret);
      continue;
    }
    try {
      const parsed = new URL(url);
      // a Redis URL's user part alone is a password (legacy form); beside a password it is a name
      const redisToken =
        parsed.protocol.startsWith('redis') && !parsed.password ? parsed.username : '';
      for (const raw of [parsed.password, redisToken]) {
        if (raw.length > 0) {
          secrets.add(raw);
          secrets.add(decodeURIComponent(raw));
        }
      }
    } catch {
      // an unparsable URL is rejected by config validation; nothing to collect here
    }
  }
  return [...secrets].filter((s) => s.length > 0);
}

/** Replaces every occurrence of each secret in `text` by `***`. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join(REDACTED);
  return out;
}

/** Redis commands whose arguments carry credentials (`HELLO 3 AUTH user pass`). */
const CREDENTIAL_COMMANDS = new Set(['auth', 'hello']);

/**
 * A serialized error with every configured secret scrubbed from each string it holds, however
 * deep, and the arguments of a credential command removed: client libraries attach more than
 * message and stack (ioredis puts the failed command, `AUTH <password>` included, on the error).
 */
export function scrubError<T extends object>(serialized: T, secrets: readonly string[]): T {
  return scrub(serialized, secrets, 0, new WeakSet()) as T;
}

function scrub(
  value: unknown,
  secrets: readonly string[],
  depth: number,
  seen: WeakSet<object>,
): unknown {
  if (typeof value === 'string') return secrets.length > 0 ? scrubSecrets(value, secrets) : value;
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value) || depth > 8) return '[…]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => scrub(item, secrets, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    out[key] = scrub(field, secrets, depth + 1, seen);
  }
  const name = out.name;
  if (typeof name === 'string' && CREDENTIAL_COMMANDS.has(name.toLowerCase()) && 'args' in out) {
    out.args = [REDACTED];
  }
  return out;
}
