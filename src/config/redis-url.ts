/**
 * Redis addresses. A server is a `redis://` or `rediss://` URL, as ioredis reads it. A primary
 * that Redis Sentinel manages is named by its sentinels and its name:
 *
 *   redis+sentinel://[user:password@]host:port[,host:port…]/<master-name>[/<db>]
 *
 * The credentials are the data nodes' (the primary and its replicas); sentinels that ask for a
 * password of their own get `?sentinelPassword=…` (and `sentinelUsername=…`). A sentinel's port
 * defaults to 26379. A Redis Cluster is named by seed nodes (the client discovers the rest):
 *
 *   redis+cluster://[user:password@]host:port[,host:port…]
 *
 * A seed's port defaults to 6379; a cluster has only database 0 and takes no parameters.
 * `rediss+sentinel://` and `rediss+cluster://` speak TLS to every node.
 */

/** What a Redis URL names, by its scheme. */
export type RedisUrlKind = 'server' | 'sentinel' | 'cluster';

/** A host and port of a sentinel or a cluster seed. */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** A Sentinel-managed primary, parsed from a `redis+sentinel://` URL. */
export interface SentinelTarget {
  readonly sentinels: readonly RedisNode[];
  /** The primary's name in the sentinels' configuration (`sentinel monitor <name> …`). */
  readonly name: string;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
  readonly tls: boolean;
}

/** A Redis Cluster, parsed from a `redis+cluster://` URL: its seed nodes and credentials. */
export interface ClusterTarget {
  readonly nodes: readonly RedisNode[];
  readonly username?: string;
  readonly password?: string;
  readonly tls: boolean;
}

const SENTINEL_FORM =
  'redis+sentinel://[user:password@]host[:port][,host[:port]…]/<master-name>[/<db>][?sentinelPassword=…]';
const CLUSTER_FORM = 'redis+cluster://[user:password@]host[:port][,host[:port]…]';

const HA_SCHEME = /^\s*(rediss?)\+(sentinel|cluster):/i;
/** Scheme, then the authority up to the first `/`, `?` or `#`, then the rest. */
const HA_URL = /^(rediss?)\+(sentinel|cluster):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/i;
const HOST = /^(?:\[([0-9a-f:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/i;
const SENTINEL_PARAMS = new Set(['sentinelPassword', 'sentinelUsername']);

/** `sentinel` or `cluster` by the URL's scheme (case-insensitive); `server` for any other. */
export function redisUrlKind(url: string): RedisUrlKind {
  const kind = HA_SCHEME.exec(url)?.[2]?.toLowerCase();
  return kind === 'sentinel' || kind === 'cluster' ? kind : 'server';
}

export function isSentinelUrl(url: string): boolean {
  return redisUrlKind(url) === 'sentinel';
}

export function isClusterUrl(url: string): boolean {
  return redisUrlKind(url) === 'cluster';
}

/** The parts of a `redis+sentinel://` or `redis+cluster://` URL, before any of them is checked. */
interface HaUrlParts {
  readonly kind: 'sentinel' | 'cluster';
  readonly tls: boolean;
  /** As written: before the authority's last `@`, if it has one. */
  readonly userinfo: string | undefined;
  readonly hostList: string;
  /** As written, from its leading `/` (empty if none). */
  readonly path: string;
  readonly query: string | undefined;
  readonly fragment: string | undefined;
}

function splitHaUrl(url: string): HaUrlParts | undefined {
  const match = HA_URL.exec(url.trim());
  if (!match) return undefined;
  const [, scheme, kind, authority, path, query, fragment] = match;
  const at = authority.lastIndexOf('@');
  return {
    kind: kind.toLowerCase() as 'sentinel' | 'cluster',
    tls: scheme.toLowerCase() === 'rediss',
    userinfo: at < 0 ? undefined : authority.slice(0, at),
    hostList: at < 0 ? authority : authority.slice(at + 1),
    path,
    query,
    fragment,
  };
}

/**
 * Parses a `redis+sentinel://` (or `rediss+sentinel://`) URL. Throws an error that names what
 * is wrong and the expected form, and never holds the URL's secrets.
 */
export function parseSentinelUrl(url: string): SentinelTarget {
  const parts = splitHaUrl(url);
  const fail = (what: string): Error => new Error(`${what}; expected ${SENTINEL_FORM}`);
  if (parts?.kind !== 'sentinel') throw fail('not a redis+sentinel:// URL');
  checkShape(parts, fail);
  const sentinels = parseNodes(parts.hostList, 'sentinel', 26_379, fail);
  const segments = parts.path.split('/').slice(1);
  if (segments.length === 0 || segments[0] === '') throw fail('the master name is missing');
  if (segments.length > 2) throw fail('the path has more than a master name and a database');
  const name = decodeOrFail(segments[0], () =>
    fail('the master name is not valid percent-encoding'),
  );
  const dbText = segments[1];
  const db = dbText === undefined ? 0 : /^\d+$/.test(dbText) ? Number(dbText) : Number.NaN;
  if (!Number.isSafeInteger(db)) throw fail('the database must be a whole number');
  const params = parseQuery(parts.query, SENTINEL_PARAMS, fail);
  const sentinelUsername = params.get('sentinelUsername');
  const sentinelPassword = params.get('sentinelPassword');
  return {
    sentinels,
    name,
    db,
    ...parseUserinfo(parts.userinfo, fail),
    ...(sentinelUsername ? { sentinelUsername } : {}),
    ...(sentinelPassword ? { sentinelPassword } : {}),
    tls: parts.tls,
  };
}

/**
 * Parses a `redis+cluster://` (or `rediss+cluster://`) URL. Throws an error that names what is
 * wrong and the expected form, and never holds the URL's secrets.
 */
export function parseClusterUrl(url: string): ClusterTarget {
  const parts = splitHaUrl(url);
  const fail = (what: string): Error => new Error(`${what}; expected ${CLUSTER_FORM}`);
  if (parts?.kind !== 'cluster') throw fail('not a redis+cluster:// URL');
  checkShape(parts, fail);
  const nodes = parseNodes(parts.hostList, 'seed node', 6379, fail);
  if (parts.path !== '' && parts.path !== '/') {
    throw fail('a database path is not allowed (a Redis Cluster has only database 0)');
  }
  parseQuery(parts.query, new Set(), fail);
  return { nodes, ...parseUserinfo(parts.userinfo, fail), tls: parts.tls };
}

/**
 * Checks a `redis+sentinel://` or `redis+cluster://` URL with the parser of its kind; throws as
 * that parser does. A server URL is not checked here (ioredis reads it).
 */
export function checkHaUrl(url: string): void {
  const kind = redisUrlKind(url);
  if (kind === 'sentinel') parseSentinelUrl(url);
  else if (kind === 'cluster') parseClusterUrl(url);
}

/**
 * An `@` after the hosts (other than in a sentinel parameter's value) is a password's raw `/`,
 * `?` or `#` that cut the URL short: refused before a later check could quote a piece of it.
 */
function checkShape(parts: HaUrlParts, fail: (what: string) => Error): void {
  const strayAt =
    `${parts.path}${parts.fragment ?? ''}`.includes('@') ||
    (parts.query ?? '')
      .split('&')
      .some((pair) => pair.includes('@') && !/^sentinel(?:Password|Username)=/.test(pair));
  if (strayAt) {
    throw fail(
      'an "@" follows the hosts (percent-encode "/", "?", "#" and "@" in the credentials)',
    );
  }
  if (parts.fragment !== undefined) throw fail('a fragment (#…) is not allowed');
}

function parseNodes(
  hostList: string,
  what: string,
  defaultPort: number,
  fail: (what: string) => Error,
): RedisNode[] {
  if (hostList.trim() === '') throw fail(`no ${what} is given`);
  return hostList.split(',').map((entry, index) => {
    const host = HOST.exec(entry.trim());
    const port = Number(host?.[3] ?? defaultPort);
    if (!host || !(port >= 1 && port <= 65_535)) {
      throw fail(`${what} ${index + 1} is not host[:port] with a port from 1 to 65535`);
    }
    return { host: host[1] ?? host[2], port };
  });
}

/**
 * The query's parameters (values decoded as a form's: `+` is a space). An unknown one is named
 * only when it has a value: a bare word might be a misplaced password.
 */
function parseQuery(
  query: string | undefined,
  known: ReadonlySet<string>,
  fail: (what: string) => Error,
): URLSearchParams {
  const accepted = known.size > 0 ? ` (${[...known].join(', ')})` : ' (none is accepted)';
  for (const pair of (query ?? '').split('&')) {
    if (pair === '') continue;
    if (!pair.includes('=')) throw fail(`a query parameter without a value${accepted}`);
  }
  const params = new URLSearchParams(query ?? '');
  for (const key of new Set(params.keys())) {
    if (!known.has(key)) throw fail(`unknown query parameter "${key}"${accepted}`);
    if (params.getAll(key).length > 1) throw fail(`the query parameter "${key}" is given twice`);
  }
  return params;
}

/** `user:password`, `:password` or `user:`, percent-decoded; empty parts are left out. */
function parseUserinfo(
  userinfo: string | undefined,
  fail: (what: string) => Error,
): { username?: string; password?: string } {
  if (userinfo === undefined) return {};
  const colon = userinfo.indexOf(':');
  if (colon < 0) throw fail('the credentials must be user:password or :password');
  const invalid = (): Error => fail('the credentials are not valid percent-encoding');
  const username = decodeOrFail(userinfo.slice(0, colon), invalid);
  const password = decodeOrFail(userinfo.slice(colon + 1), invalid);
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function decodeOrFail(raw: string, fail: () => Error): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw fail();
  }
}

/**
 * A list of Redis URLs separated by commas. A comma starts a new URL only where a scheme follows
 * it: inside a `redis+sentinel://` or `redis+cluster://` URL, commas separate its hosts.
 */
export function splitRedisUrls(value: string): string[] {
  return value
    .split(/,(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i)
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/**
 * A `redis+sentinel://` or `redis+cluster://` URL with its passwords replaced by `mask`: the
 * hosts, user names, master name and database stay readable. One that does not parse is reduced
 * to its scheme.
 */
export function redactHaUrl(url: string, mask: string): string {
  const scheme = /^\s*([a-z][a-z0-9+.-]*:)/i.exec(url)?.[1] ?? '';
  const auth = (target: { username?: string; password?: string }): string => {
    const user = target.username ? encodeURIComponent(target.username) : '';
    return target.password ? `${user}:${mask}@` : user ? `${user}:@` : '';
  };
  try {
    if (isClusterUrl(url)) {
      const target = parseClusterUrl(url);
      return `${scheme}//${auth(target)}${formatNodes(target.nodes)}`;
    }
    const target = parseSentinelUrl(url);
    const path = `/${encodeURIComponent(target.name)}${target.db ? `/${target.db}` : ''}`;
    const params = [
      ...(target.sentinelUsername
        ? [`sentinelUsername=${encodeURIComponent(target.sentinelUsername)}`]
        : []),
      ...(target.sentinelPassword ? [`sentinelPassword=${mask}`] : []),
    ];
    const query = params.length > 0 ? `?${params.join('&')}` : '';
    return `${scheme}//${auth(target)}${formatNodes(target.sentinels)}${path}${query}`;
  } catch {
    return `${scheme}//${mask}`;
  }
}

function formatNodes(nodes: readonly RedisNode[]): string {
  return nodes.map((n) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`).join(',');
}

/**
 * The secrets of a `redis+sentinel://` or `redis+cluster://` URL (the data nodes' password, the
 * sentinels'), both as written and decoded, for scrubbing free text. Read leniently, so a URL that
 * does not parse still gives them: a user part without a colon counts as a password.
 */
export function haUrlSecrets(url: string): string[] {
  const parts = splitHaUrl(url);
  if (!parts) return [];
  const secrets: string[] = [];
  if (parts.userinfo) {
    const colon = parts.userinfo.indexOf(':');
    secrets.push(colon < 0 ? parts.userinfo : parts.userinfo.slice(colon + 1));
  }
  for (const pair of (parts.query ?? '').split('&')) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? decodeSafe(pair.slice(0, eq).replace(/\+/g, ' ')) : '';
    if (key === 'sentinelPassword') secrets.push(pair.slice(eq + 1));
  }
  // the query's values decode `+` as a space (URLSearchParams), the user part does not
  return [
    ...new Set(
      secrets.flatMap((raw) => [raw, decodeSafe(raw), decodeSafe(raw.replace(/\+/g, ' '))]),
    ),
  ].filter((secret) => secret.length > 0);
}

function decodeSafe(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
