/**
 * Redis addresses. A server is a `redis://` or `rediss://` URL, as ioredis reads it. A primary
 * that Redis Sentinel manages is named by its sentinels and its name, in the form Lettuce and
 * Spring Data Redis use:
 *
 *   redis-sentinel://[[user]:password@]host[:port][,host[:port]…][/db][?sentinelPassword=…]#name
 *
 * `rediss-sentinel://` speaks TLS to the sentinels and the data nodes. The credentials are the
 * data nodes' (the primary and its replicas); sentinels that ask for a password of their own get
 * `sentinelPassword` (and `sentinelUsername`). A sentinel's port defaults to 26379.
 */

/** A Sentinel-managed primary, parsed from a `redis-sentinel://` URL. */
export interface SentinelTarget {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The primary's name in the sentinels' configuration (`sentinel monitor <name> …`). */
  readonly name: string;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
  readonly tls: boolean;
}

const SENTINEL_SCHEME = /^rediss?-sentinel:\/\//i;
const SENTINEL_URL =
  /^(rediss?)-sentinel:\/\/(?:([^@/?#]*)@)?([^/?#@]+)(?:\/(\d*))?(?:\?([^#]*))?#(.+)$/i;
const HOST = /^(?:\[([0-9a-f:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/i;
const QUERY_KEYS = new Set(['sentinelPassword', 'sentinelUsername']);

export function isSentinelUrl(url: string): boolean {
  return SENTINEL_SCHEME.test(url);
}

/**
 * Parses a `redis-sentinel://` URL. Throws an error that names what is wrong and never holds
 * the URL's secrets.
 */
export function parseSentinelUrl(url: string): SentinelTarget {
  const match = SENTINEL_URL.exec(url.trim());
  if (!match) {
    throw new Error(
      'expected redis-sentinel://[[user]:password@]host[:port][,host[:port]…][/db]#primaryName',
    );
  }
  const [, scheme, userinfo, hostList, dbText, query, fragment] = match;
  const sentinels = hostList.split(',').map((entry) => {
    const host = HOST.exec(entry.trim());
    const port = Number(host?.[3] ?? 26379);
    if (!host || !(port >= 1 && port <= 65_535)) {
      throw new Error(`sentinel address "${entry}" is not host[:port]`);
    }
    return { host: host[1] ?? host[2], port };
  });
  const db = dbText ? Number(dbText) : 0;
  if (!Number.isSafeInteger(db)) throw new Error('the database must be a number');
  const params = new URLSearchParams(query ?? '');
  for (const key of params.keys()) {
    if (!QUERY_KEYS.has(key)) {
      throw new Error(`unknown parameter "${key}" (sentinelPassword, sentinelUsername)`);
    }
  }
  const credentials = splitUserinfo(userinfo);
  return {
    sentinels,
    name: decodeURIComponent(fragment),
    db,
    ...credentials,
    ...(params.get('sentinelUsername')
      ? { sentinelUsername: params.get('sentinelUsername') ?? '' }
      : {}),
    ...(params.get('sentinelPassword')
      ? { sentinelPassword: params.get('sentinelPassword') ?? '' }
      : {}),
    tls: scheme.toLowerCase() === 'rediss',
  };
}

/**
 * `user:password`, `:password`, or a bare `password` (the legacy form ioredis also reads from a
 * `redis://` URL's user part), percent-decoded.
 */
function splitUserinfo(userinfo: string | undefined): { username?: string; password?: string } {
  if (!userinfo) return {};
  const colon = userinfo.indexOf(':');
  if (colon < 0) return { password: decodeURIComponent(userinfo) };
  const username = decodeURIComponent(userinfo.slice(0, colon));
  const password = decodeURIComponent(userinfo.slice(colon + 1));
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

/**
 * A list of Redis URLs separated by commas. A comma starts a new URL only where a scheme follows
 * it: inside a `redis-sentinel://` URL, commas separate its sentinels.
 */
export function splitRedisUrls(value: string): string[] {
  return value
    .split(/,(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i)
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/** The URL with its secrets replaced by `mask`: the sentinels, database and name stay readable. */
export function redactSentinelUrl(url: string, mask: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? 'redis-sentinel:';
  let target: SentinelTarget;
  try {
    target = parseSentinelUrl(url);
  } catch {
    return `${scheme}//${mask}`;
  }
  const user = target.username ? encodeURIComponent(target.username) : '';
  const auth = target.password ? `${user}:${mask}@` : user ? `${user}:@` : '';
  const hosts = target.sentinels
    .map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`)
    .join(',');
  const query = [
    ...(target.sentinelUsername
      ? [`sentinelUsername=${encodeURIComponent(target.sentinelUsername)}`]
      : []),
    ...(target.sentinelPassword ? [`sentinelPassword=${mask}`] : []),
  ];
  return `${scheme}//${auth}${hosts}${target.db ? `/${target.db}` : ''}${query.length > 0 ? `?${query.join('&')}` : ''}#${encodeURIComponent(target.name)}`;
}

/**
 * The secrets of a `redis-sentinel://` URL (the data nodes' password, the sentinels'), both as
 * written in the URL and decoded, for scrubbing free text; none when it does not parse.
 */
export function sentinelUrlSecrets(url: string): string[] {
  const match = SENTINEL_URL.exec(url.trim());
  if (!match) return [];
  const secrets: string[] = [];
  const userinfo = match[2];
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    secrets.push(colon < 0 ? userinfo : userinfo.slice(colon + 1));
  }
  for (const pair of (match[5] ?? '').split('&')) {
    const [key, value] = pair.split('=');
    if (key === 'sentinelPassword' && value) secrets.push(value);
  }
  // the query's values decode `+` as a space (URLSearchParams), the user part does not
  return secrets
    .flatMap((raw) => [raw, decodeSafe(raw), decodeSafe(raw.replace(/\+/g, ' '))])
    .filter((secret) => secret.length > 0);
}

function decodeSafe(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
