import { describe, it, expect } from 'vitest';
import { enc, sentinel, sweep } from '../../e2e/support/secret-sweep.js';

/** The sweep the e2e and reliability suites rely on must see a password in each form it claims to. */
describe('secret sweep', () => {
  const password = sentinel(true);
  const user = 'svc-user';
  const b64 = (text: string): string => Buffer.from(text).toString('base64');

  it.each([
    ['raw', `connect failed: ${password}`],
    ['percent-encoded', `amqp://${user}:${enc(password)}@host/vhost`],
    ['random core', `token ${/[0-9a-f]{16}/.exec(password)?.[0] ?? ''}`],
    ['base64(password)', `header: ${b64(password)}`],
    [`base64(${user}:password)`, `Authorization: Basic ${b64(`${user}:${password}`)}`],
    [`base64(\\0${user}\\0password)`, `sasl ${b64(`\0${user}\0${password}`)}`],
  ])('finds a password planted in %s form', (form, line) => {
    const findings = sweep({ log: `first line\n${line}\nlast line` }, [password], [user]);
    expect(findings.map((f) => f.form)).toContain(form);
    expect(findings.every((f) => f.output === 'log' && f.line === line)).toBe(true);
  });

  it('finds nothing in outputs that hold another sentinel and the user name only', () => {
    const other = sentinel(true);
    const outputs = { log: `amqp://${user}:${enc(other)}@host ${other}`, metrics: 'up 1' };
    expect(sweep(outputs, [password], [user])).toEqual([]);
  });
});
