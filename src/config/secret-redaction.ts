const REDACTED = '***';

/**
 * Returns the URL with its password (and a bare token in the user part) replaced by `***`,
 * so it can be logged, put in a metric label or a health body. Never throws: an unparsable
 * URL is reduced to its scheme.
 */
export function redactUrl(url: string): string {
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
