import { describe, expect, it } from 'vitest';
import {
  haUrlSecrets,
  isClusterUrl,
  isSentinelUrl,
  parseClusterUrl,
  parseSentinelUrl,
  redactHaUrl,
  redisUrlKind,
  splitRedisUrls,
} from '../../../src/config/redis-url.js';
import { redactUrl, scrubSecrets, secretsOf } from '../../../src/config/secret-redaction.js';
import { loadEnv } from '../../../src/config/env.schema.js';
import { resolveRedisUrl } from '../../../src/cli/cli-args.js';
import { CliUsageError } from '../../../src/cli/cli.errors.js';
import { sentinelOptions, redisClientOptions } from '../../../src/redis/redis.connection.js';

/** The message `parse(url)` throws; fails the test if it does not throw. */
function errorOf(parse: (url: string) => unknown, url: string): string {
  try {
    parse(url);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`accepted ${url}`);
}

describe('redisUrlKind', () => {
  it.each<[string, string]>([
    ['redis://h:6379', 'server'],
    ['rediss://h:6380/1', 'server'],
    ['redis+sentinel://s1/m', 'sentinel'],
    ['REDISS+Sentinel://s1/m', 'sentinel'],
    ['redis+cluster://n1:7000', 'cluster'],
    ['Rediss+CLUSTER://n1:7000', 'cluster'],
    // the unreleased form: no longer a sentinel URL
    ['redis-sentinel://s1#m', 'server'],
    ['not a url', 'server'],
  ])('%s names a %s', (url, kind) => {
    expect(redisUrlKind(url)).toBe(kind);
    expect(isSentinelUrl(url)).toBe(kind === 'sentinel');
    expect(isClusterUrl(url)).toBe(kind === 'cluster');
  });
});

describe('redis+sentinel:// URLs', () => {
  it('reads the sentinels, the master name, the database and both credentials', () => {
    expect(
      parseSentinelUrl(
        'redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/orders/2?sentinelPassword=s%2Bk&sentinelUsername=ops',
      ),
    ).toEqual({
      sentinels: [
        { host: 's1', port: 26380 },
        { host: 's2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
      name: 'orders',
      db: 2,
      username: 'app',
      password: 'p@ss',
      sentinelUsername: 'ops',
      sentinelPassword: 's+k',
      tls: false,
    });
  });

  it('defaults the database to 0, decodes the master name, and speaks TLS with rediss+', () => {
    expect(parseSentinelUrl('rediss+sentinel://:secret@h/my%2Fmaster')).toEqual({
      sentinels: [{ host: 'h', port: 26379 }],
      name: 'my/master',
      db: 0,
      password: 'secret',
      tls: true,
    });
    expect(parseSentinelUrl('REDIS+SENTINEL://h:1/m/0').db).toBe(0);
  });

  it.each([
    ['no master name', 'redis+sentinel://h1:26379,h2:26379', /master name is missing/],
    ['an empty master name', 'redis+sentinel://h1/', /master name is missing/],
    ['a port that is not one', 'redis+sentinel://h1:99999/m', /sentinel 1 is not host\[:port\]/],
    ['an empty port', 'redis+sentinel://h1:/m', /sentinel 1 /],
    ['an empty sentinel', 'redis+sentinel://h1,,h2/m', /sentinel 2 /],
    ['no sentinel', 'redis+sentinel:///m', /no sentinel/],
    ['a database that is not a number', 'redis+sentinel://h/m/x', /database/],
    ['a path longer than name and database', 'redis+sentinel://h/m/1/2', /path/],
    ['an unknown parameter', 'redis+sentinel://h1/m?password=x', /"password"/],
    [
      'a parameter given twice',
      'redis+sentinel://h1/m?sentinelUsername=a&sentinelUsername=b',
      /twice/,
    ],
    ['a fragment (the unreleased form)', 'redis+sentinel://h1#m', /fragment/],
    ['another scheme', 'redis-sentinel://h1#m', /not a redis\+sentinel/],
  ])('rejects %s with a message that names it and holds no secret', (_what, url, reason) => {
    const message = errorOf(parseSentinelUrl, url.replace('://', '://:hunter2@'));
    expect(message).toMatch(reason);
    expect(message).toContain('expected redis+sentinel://[user:password@]host');
    expect(message).not.toContain('hunter2');
  });

  it('rejects a user part without a colon, and credentials cut short, without quoting them', () => {
    expect(errorOf(parseSentinelUrl, 'redis+sentinel://hunter2@h/m')).toMatch(
      /^the credentials must be user:password or :password; expected/,
    );
    for (const url of [
      'redis+sentinel://:hun/ter2@h/m',
      'redis+sentinel://:hun?ter2=x@h/m',
      'redis+sentinel://:hunter2#x@h/m',
      'redis+sentinel://:%zzhunter2@h/m',
    ]) {
      const message = errorOf(parseSentinelUrl, url);
      expect(message).not.toMatch(/hun|ter2/);
    }
  });

  it('gives ioredis Sentinel mode with the failover detector and the service options', () => {
    const options = sentinelOptions(
      parseSentinelUrl('redis+sentinel://:pw@s1:26379/main'),
      redisClientOptions('x'),
    );
    expect(options).toMatchObject({
      sentinels: [{ host: 's1', port: 26379 }],
      name: 'main',
      role: 'master',
      password: 'pw',
      failoverDetector: true,
      enableOfflineQueue: false,
      connectionName: 'x',
    });
    expect(options.tls).toBeUndefined();
  });
});

describe('redis+cluster:// URLs', () => {
  it('reads several seed nodes, defaulting a port to 6379', () => {
    expect(parseClusterUrl('redis+cluster://n1:7000,n2:7001,n3')).toEqual({
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
        { host: 'n3', port: 6379 },
      ],
      tls: false,
    });
  });

  it('reads an IPv6 seed, the credentials (percent-decoded) and TLS', () => {
    expect(parseClusterUrl('rediss+cluster://app:p%40ss%2Fw@[::1]:7000,10.0.0.2:7001/')).toEqual({
      nodes: [
        { host: '::1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
      username: 'app',
      password: 'p@ss/w',
      tls: true,
    });
    expect(parseClusterUrl('redis+cluster://:pw@n1:7000')).toEqual({
      nodes: [{ host: 'n1', port: 7000 }],
      password: 'pw',
      tls: false,
    });
  });

  it.each([
    ['no host', 'redis+cluster://', /no seed node/],
    ['an empty seed', 'redis+cluster://n1:7000,,n2:7001', /seed node 2 is not host\[:port\]/],
    ['a port out of range', 'redis+cluster://n1:70000', /seed node 1 is not host\[:port\]/],
    ['a port of 0', 'redis+cluster://n1:0', /seed node 1 /],
    ['a port that is not a number', 'redis+cluster://n1:abc', /seed node 1 /],
    ['an IPv6 address without brackets', 'redis+cluster://::1:7000', /seed node 1 /],
    ['a database path', 'redis+cluster://n1:7000/0', /only database 0/],
    ['another database', 'redis+cluster://n1:7000/1', /only database 0/],
    [
      'a query parameter',
      'redis+cluster://n1:7000?password=x',
      /unknown query parameter "password"/,
    ],
    ['a sentinel parameter', 'redis+cluster://n1?sentinelPassword=x', /"sentinelPassword"/],
    ['a fragment', 'redis+cluster://n1:7000#x', /fragment/],
  ])('rejects %s with a message that names it and holds no secret', (_what, url, reason) => {
    const message = errorOf(parseClusterUrl, url.replace('://', '://app:hunter2@'));
    expect(message).toMatch(reason);
    expect(message).toContain('expected redis+cluster://[user:password@]host');
    expect(message).not.toContain('hunter2');
  });

  it('rejects a sentinel URL, and a parameter without a value without naming it', () => {
    expect(errorOf(parseClusterUrl, 'redis+sentinel://h/m')).toMatch(/not a redis\+cluster/);
    const message = errorOf(parseClusterUrl, 'redis+cluster://n1?hunter2');
    expect(message).toMatch(/without a value/);
    expect(message).not.toContain('hunter2');
  });
});

describe('lists and redaction', () => {
  it('splits a list at commas before a scheme only', () => {
    expect(
      splitRedisUrls(
        'redis+sentinel://a:1,b:2/m1, redis://c:3 ,rediss+sentinel://d,e/m2,redis+cluster://f:7000,[::1]:7001,rediss+cluster://g',
      ),
    ).toEqual([
      'redis+sentinel://a:1,b:2/m1',
      'redis://c:3',
      'rediss+sentinel://d,e/m2',
      'redis+cluster://f:7000,[::1]:7001',
      'rediss+cluster://g',
    ]);
  });

  it('redacts a sentinel URL and keeps the hosts, master name and database readable', () => {
    const url = 'redis+sentinel://app:pw1@s1,s2:26380/my%20primary/3?sentinelPassword=pw2';
    expect(redactUrl(url)).toBe(
      'redis+sentinel://app:***@s1:26379,s2:26380/my%20primary/3?sentinelPassword=***',
    );
    expect(redactHaUrl('redis+sentinel://:pw@nope', '***')).toBe('redis+sentinel://***');
    expect(secretsOf([url])).toEqual(expect.arrayContaining(['pw1', 'pw2']));
    expect(haUrlSecrets('redis+sentinel://:a%2Fb@h/m?sentinelPassword=c+d')).toEqual(
      expect.arrayContaining(['a%2Fb', 'a/b', 'c+d', 'c d']),
    );
  });

  it('redacts a cluster URL, hiding the password in its raw and percent-encoded forms', () => {
    const url = 'rediss+cluster://app:p%40ss%2Fw@n1:7000,[::1]:7001';
    expect(redactUrl(url)).toBe('rediss+cluster://app:***@n1:7000,[::1]:7001');
    expect(redactHaUrl('redis+cluster://n1', '***')).toBe('redis+cluster://n1:6379');
    expect(redactHaUrl('redis+cluster://:pw@n1/2', '***')).toBe('redis+cluster://***');
    const secrets = secretsOf([url]);
    expect(secrets).toEqual(expect.arrayContaining(['p%40ss%2Fw', 'p@ss/w']));
    expect(secrets).not.toContain('app');
    expect(scrubSecrets(`AUTH failed for ${url} with p@ss/w`, secrets)).toBe(
      'AUTH failed for rediss+cluster://app:***@n1:7000,[::1]:7001 with ***',
    );
  });

  it('lists the secrets of a URL that does not parse', () => {
    expect(haUrlSecrets('redis+cluster://t0ken@n1/0')).toEqual(['t0ken']);
    expect(haUrlSecrets('redis+cluster://n1:7000')).toEqual([]);
    expect(haUrlSecrets('redis://:pw@h')).toEqual([]);
  });
});

describe('configuration', () => {
  it('accepts sentinel and cluster URLs in REDIS_URL and REDIS_LOCK_URLS', () => {
    const env = loadEnv({
      REDIS_URL: 'redis+sentinel://s1,s2,s3/main',
      REDIS_LOCK_URLS:
        'redis+sentinel://a,b,c/l1,rediss+cluster://d:7000,e:7001,redis://g:6379,redis+cluster://[::1]:7000',
    });
    expect(env.redisUrl).toBe('redis+sentinel://s1,s2,s3/main');
    expect(env.redisLockUrls).toEqual([
      'redis+sentinel://a,b,c/l1',
      'rediss+cluster://d:7000,e:7001',
      'redis://g:6379',
      'redis+cluster://[::1]:7000',
    ]);
    expect(loadEnv({ REDIS_URL: 'redis+cluster://n1:7000,n2:7000' }).redisUrl).toBe(
      'redis+cluster://n1:7000,n2:7000',
    );
  });

  it.each([
    ['redis+sentinel://:hunter2@s1,s2', /REDIS_URL[\s\S]*master name is missing/],
    ['redis+cluster://:hunter2@n1:7000/0', /REDIS_URL[\s\S]*only database 0/],
    ['redis+cluster://:hunter2@n1:7000?tls=1', /REDIS_URL[\s\S]*unknown query parameter "tls"/],
    ['redis-sentinel://:hunter2@s1,s2#m', /redis\+sentinel:\/\/ or rediss\+sentinel:\/\//],
  ])('rejects %s with a clear error that holds no secret', (url, reason) => {
    expect(() => loadEnv({ REDIS_URL: url })).toThrow(reason);
    expect(() => loadEnv({ REDIS_URL: url })).not.toThrow(/hunter2/);
  });

  it('lets the CLIs take sentinel and cluster URLs, and rejects malformed ones', () => {
    expect(resolveRedisUrl('redis+cluster://n1:7000', {})).toBe('redis+cluster://n1:7000');
    expect(resolveRedisUrl(undefined, { REDIS_URL: ' redis+sentinel://s1/m ' })).toBe(
      'redis+sentinel://s1/m',
    );
    const bad = (): string => resolveRedisUrl('redis+cluster://:hunter2@n1/3', {});
    expect(bad).toThrow(CliUsageError);
    expect(bad).toThrow(/--redis-url: a database path is not allowed/);
    expect(bad).not.toThrow(/hunter2/);
  });
});
