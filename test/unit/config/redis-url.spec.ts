import { describe, expect, it } from 'vitest';
import {
  parseSentinelUrl,
  redactSentinelUrl,
  sentinelUrlSecrets,
  splitRedisUrls,
} from '../../../src/config/redis-url.js';
import { redactUrl, secretsOf } from '../../../src/config/secret-redaction.js';
import { loadEnv } from '../../../src/config/env.schema.js';
import { sentinelOptions, redisClientOptions } from '../../../src/redis/redis.connection.js';

describe('redis-sentinel:// URLs', () => {
  it('reads the sentinels, the primary name, the database and both credentials', () => {
    expect(
      parseSentinelUrl(
        'redis-sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/2?sentinelPassword=s%2Bk&sentinelUsername=ops#orders',
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

  it('takes a bare user part as the password, as ioredis does for redis://', () => {
    expect(parseSentinelUrl('rediss-sentinel://secret@h#m')).toMatchObject({
      password: 'secret',
      tls: true,
      db: 0,
    });
    expect(parseSentinelUrl('redis-sentinel://:secret@h#m').username).toBeUndefined();
  });

  it.each([
    ['no primary name', 'redis-sentinel://h1:26379,h2:26379'],
    ['a port that is not one', 'redis-sentinel://h1:99999#m'],
    ['an empty sentinel', 'redis-sentinel://h1,,h2#m'],
    ['an unknown parameter', 'redis-sentinel://h1?password=x#m'],
  ])('rejects %s with a message that holds no secret', (_what, url) => {
    const withSecret = url.replace('://', '://:hunter2@');
    expect(() => parseSentinelUrl(withSecret)).toThrow();
    try {
      parseSentinelUrl(withSecret);
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('splits a list at commas before a scheme only', () => {
    expect(
      splitRedisUrls('redis-sentinel://a:1,b:2#m1, redis://c:3 ,rediss-sentinel://d,e#m2'),
    ).toEqual(['redis-sentinel://a:1,b:2#m1', 'redis://c:3', 'rediss-sentinel://d,e#m2']);
  });

  it('redacts the passwords and keeps the rest readable', () => {
    const url = 'redis-sentinel://app:pw1@s1,s2:26380/3?sentinelPassword=pw2#orders';
    expect(redactUrl(url)).toBe(
      'redis-sentinel://app:***@s1:26379,s2:26380/3?sentinelPassword=***#orders',
    );
    expect(redactSentinelUrl('redis-sentinel://:pw@nope', '***')).toBe('redis-sentinel://***');
    expect(secretsOf([url])).toEqual(expect.arrayContaining(['pw1', 'pw2']));
    expect(sentinelUrlSecrets('redis-sentinel://a%2Fb@h?sentinelPassword=c+d#m')).toEqual(
      expect.arrayContaining(['a%2Fb', 'a/b', 'c+d', 'c d']),
    );
  });

  it('is accepted by REDIS_URL and REDIS_LOCK_URLS, with a clear error when malformed', () => {
    const env = loadEnv({
      REDIS_URL: 'redis-sentinel://s1,s2,s3#main',
      REDIS_LOCK_URLS: 'redis-sentinel://a,b,c#l1,redis-sentinel://d,e,f#l2,redis://g:6379',
    });
    expect(env.redisUrl).toBe('redis-sentinel://s1,s2,s3#main');
    expect(env.redisLockUrls).toHaveLength(3);
    expect(() => loadEnv({ REDIS_URL: 'redis-sentinel://:hunter2@s1,s2' })).toThrow(
      /REDIS_URL[\s\S]*#primaryName/,
    );
    expect(() => loadEnv({ REDIS_URL: 'redis-sentinel://:hunter2@s1,s2' })).not.toThrow(/hunter2/);
  });

  it('gives ioredis Sentinel mode with the failover detector and the service options', () => {
    const options = sentinelOptions(
      parseSentinelUrl('redis-sentinel://:pw@s1:26379#main'),
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
