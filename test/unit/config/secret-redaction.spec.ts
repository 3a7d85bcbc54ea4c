import { describe, it, expect } from 'vitest';
import {
  redactUrl,
  scrubError,
  scrubSecrets,
  secretsOf,
} from '../../../src/config/secret-redaction.js';

describe('redactUrl', () => {
  it.each([
    ['amqp://guest:guest@localhost:5672', 'amqp://guest:***@localhost:5672'],
    [
      'amqps://app:s3cret@rabbit.internal:5671/ledger',
      'amqps://app:***@rabbit.internal:5671/ledger',
    ],
    ['amqp://app:p%40ss%3Aw0rd@rabbit:5672', 'amqp://app:***@rabbit:5672'],
    ['redis://:pw@cache:6379', 'redis://:***@cache:6379'],
    ['rediss://default:pw@cache:6380/2', 'rediss://default:***@cache:6380/2'],
    ['redis://t0ken@cache:6379', 'redis://***@cache:6379'],
    [
      'redis+sentinel://app:p%40ss@s1:26379,s2/mymaster/2?sentinelPassword=sp',
      'redis+sentinel://app:***@s1:26379,s2:26379/mymaster/2?sentinelPassword=***',
    ],
    ['rediss+sentinel://:pw@[::1]:26380/m', 'rediss+sentinel://:***@[::1]:26380/m'],
    ['redis+cluster://:p%40ss@n1:7000,n2:7001', 'redis+cluster://:***@n1:7000,n2:7001'],
    ['rediss+cluster://app:pw@[::1]:7000', 'rediss+cluster://app:***@[::1]:7000'],
    ['redis+cluster://:pw@n1:7000/1', 'redis+cluster://***'],
    ['redis+sentinel://pw@s1#m', 'redis+sentinel://***'],
  ])('hides the secret of %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
  });

  it('leaves a URL without credentials as it is', () => {
    expect(redactUrl('redis://cache:6379')).toBe('redis://cache:6379');
    expect(redactUrl('amqp://rabbit:5672/%2F')).toBe('amqp://rabbit:5672/%2F');
  });

  it('keeps an AMQP user name, which is not a secret there', () => {
    expect(redactUrl('amqp://guest@localhost')).toBe('amqp://guest@localhost');
  });

  it('reduces an unparsable URL to its scheme', () => {
    expect(redactUrl('amqp://user:s3cret@host:notaport')).toBe('amqp://***');
    expect(redactUrl('redis://user:s3cret@[bad')).toBe('redis://***');
  });

  it('reduces text without a scheme to the redaction mark', () => {
    expect(redactUrl('not a url')).toBe('//***');
    expect(redactUrl('')).toBe('//***');
  });

  // "user:s3cret@host" is a valid URL with scheme "user:" and an opaque path.
  it('hides the password of a URL whose scheme was forgotten', () => {
    expect(redactUrl('user:s3cret@rabbit:5672')).not.toContain('s3cret');
  });
});

describe('secretsOf', () => {
  it('collects passwords of every URL', () => {
    expect(secretsOf(['amqp://a:one@h1', 'amqps://b:two@h2']).sort()).toEqual(['one', 'two']);
  });

  it('collects a percent-encoded password in both its raw and decoded forms', () => {
    expect(secretsOf(['amqp://app:p%40ss%3Aw0rd@rabbit']).sort()).toEqual(
      ['p%40ss%3Aw0rd', 'p@ss:w0rd'].sort(),
    );
  });

  it('collects a Redis password given without a user name', () => {
    expect(secretsOf(['redis://:pw@cache:6379'])).toEqual(['pw']);
  });

  it('collects a Redis token given as the user name', () => {
    expect(secretsOf(['redis://t0ken@cache:6379'])).toEqual(['t0ken']);
  });

  it('collects the passwords of sentinel and cluster URLs, raw and decoded', () => {
    expect(
      secretsOf([
        'redis+sentinel://:p%40ss@s1/m?sentinelPassword=s%2Fp',
        'rediss+cluster://app:c%3Aw@n1:7000',
      ]),
    ).toEqual(expect.arrayContaining(['p%40ss', 'p@ss', 's%2Fp', 's/p', 'c%3Aw', 'c:w']));
    expect(secretsOf(['redis+cluster://app:pw@n1:7000'])).toEqual(['pw']);
  });

  it('does not treat an AMQP user name as a secret', () => {
    expect(secretsOf(['amqp://guest@localhost'])).toEqual([]);
  });

  // With the common ACL form "redis://default:pw@host", scrubbing "default" would mangle every
  // log line that contains the word.
  it('does not treat a Redis ACL user name followed by a password as a secret', () => {
    expect(secretsOf(['rediss://default:pw@cache:6380'])).toEqual(['pw']);
  });

  it('lists each secret once and ignores URLs without credentials or unparsable ones', () => {
    expect(
      secretsOf(['amqp://a:same@h1', 'amqp://b:same@h2', 'redis://cache', 'nonsense', '']),
    ).toEqual(['same']);
  });
});

describe('scrubSecrets', () => {
  it('replaces every occurrence of each secret', () => {
    expect(
      scrubSecrets('connect to amqp://app:s3cret@h failed; retrying with s3cret', ['s3cret']),
    ).toBe('connect to amqp://app:***@h failed; retrying with ***');
  });

  it('scrubs both forms of a percent-encoded password in free text', () => {
    const secrets = secretsOf(['amqp://app:p%40ss@rabbit']);
    const text = 'url amqp://app:p%40ss@rabbit rejected credentials p@ss';
    const scrubbed = scrubSecrets(text, secrets);
    expect(scrubbed).not.toContain('p%40ss');
    expect(scrubbed).not.toContain('p@ss');
    expect(scrubbed).toBe('url amqp://app:***@rabbit rejected credentials ***');
  });

  it('scrubs Redis passwords and tokens', () => {
    const secrets = secretsOf(['redis://:pw-1@a:6379', 'redis://tok-2@b:6379']);
    expect(scrubSecrets('AUTH pw-1 failed on a, tok-2 failed on b', secrets)).toBe(
      'AUTH *** failed on a, *** failed on b',
    );
  });

  it('leaves text alone when there are no secrets', () => {
    expect(scrubSecrets('nothing to hide', [])).toBe('nothing to hide');
  });
});

describe('scrubError', () => {
  const secrets = ['S3cret-pw'];

  it('scrubs every string field, however deep, not only message and stack', () => {
    const serialized = {
      type: 'Error',
      message: 'connect to redis://:S3cret-pw@db:6379 failed',
      stack: 'Error: S3cret-pw\n    at x',
      details: { url: 'amqp://u:S3cret-pw@mq', attempts: 3, nested: [['S3cret-pw']] },
    };
    expect(scrubError(serialized, secrets)).toEqual({
      type: 'Error',
      message: 'connect to redis://:***@db:6379 failed',
      stack: 'Error: ***\n    at x',
      details: { url: 'amqp://u:***@mq', attempts: 3, nested: [['***']] },
    });
  });

  it("drops the arguments of ioredis's failed AUTH or HELLO command, even with no known secret", () => {
    const serialized = {
      type: 'ReplyError',
      message: 'WRONGPASS invalid username-password pair or user is disabled.',
      command: { name: 'auth', args: ['a-password-no-url-mentioned'] },
    };
    expect(scrubError(serialized, [])).toMatchObject({ command: { name: 'auth', args: ['***'] } });
    expect(scrubError({ command: { name: 'HELLO', args: ['3', 'AUTH', 'u', 'pw'] } }, [])).toEqual({
      command: { name: 'HELLO', args: ['***'] },
    });
    expect(scrubError({ command: { name: 'get', args: ['k'] } }, secrets)).toEqual({
      command: { name: 'get', args: ['k'] },
    });
  });

  it('survives a cycle', () => {
    const cyclic: Record<string, unknown> = { message: 'S3cret-pw' };
    cyclic.self = cyclic;
    expect(scrubError(cyclic, secrets)).toEqual({ message: '***', self: '[…]' });
  });
});
