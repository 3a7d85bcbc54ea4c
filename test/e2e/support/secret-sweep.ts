import { randomBytes } from 'node:crypto';
import type { GetMessage } from 'amqplib';

// The secret sweep (issue 5) of the e2e suite and of the reliability suite's runs: sentinel
// passwords, and every form in which one could leak into an output.

/**
 * A password no output may contain. Each has a random core of its own; the `special` ones carry
 * URL-special characters, so they go into URLs percent-encoded.
 */
export function sentinel(special = false): string {
  const core = `S3ntinel-${randomBytes(8).toString('hex')}`;
  return special ? `${core}-p@ss:w/rd` : core;
}

/** How a password is put in a URL's user-info part. */
export const enc = encodeURIComponent;

interface Needle {
  readonly label: string;
  readonly text: string;
  readonly exactCase: boolean;
}

const base64 = (text: string): string => Buffer.from(text).toString('base64');

/** Every form of `password` the sweep looks for: raw, percent-encoded, its random core, base64. */
function needlesOf(password: string, users: readonly string[]): Needle[] {
  const core = /[0-9a-f]{16}/.exec(password)?.[0];
  if (!core) throw new Error(`not a sentinel: ${password}`);
  const needles: Needle[] = [
    { label: 'raw', text: password, exactCase: false },
    { label: 'percent-encoded', text: enc(password), exactCase: false },
    { label: 'random core', text: core, exactCase: false },
    { label: 'base64(password)', text: base64(password), exactCase: true },
    // SASL PLAIN (AMQP) and HTTP basic auth forms
    { label: 'base64(\\0password)', text: base64(`\0${password}`), exactCase: true },
  ];
  for (const user of ['', 'default', ...users]) {
    needles.push(
      { label: `base64(${user}:password)`, text: base64(`${user}:${password}`), exactCase: true },
      {
        label: `base64(\\0${user}\\0password)`,
        text: base64(`\0${user}\0${password}`),
        exactCase: true,
      },
    );
  }
  // a password without URL-special characters is its own percent-encoding: report it once
  return needles.filter(
    (n, i) => needles.findIndex((m) => m.text.toLowerCase() === n.text.toLowerCase()) === i,
  );
}

/** Where a sentinel was found: which output, in which form, and the line it was on. */
export interface Finding {
  readonly output: string;
  readonly form: string;
  readonly line: string;
}

export function sweep(
  outputs: Record<string, string>,
  passwords: readonly string[],
  users: string[],
): Finding[] {
  const findings: Finding[] = [];
  for (const password of passwords) {
    for (const needle of needlesOf(password, users)) {
      for (const [output, text] of Object.entries(outputs)) {
        for (const line of text.split('\n')) {
          const found = needle.exactCase
            ? line.includes(needle.text)
            : line.toLowerCase().includes(needle.text.toLowerCase());
          if (found) findings.push({ output, form: needle.label, line: line.slice(0, 2_000) });
        }
      }
    }
  }
  return findings;
}

/** JSON of a dead-lettered message, with Buffers (byte-array headers) shown as text. */
export function describeMessage(message: GetMessage): string {
  return JSON.stringify(
    { fields: message.fields, properties: message.properties },
    (_key, value: unknown) => {
      const buffer = value as { type?: unknown; data?: unknown } | null;
      if (buffer && buffer.type === 'Buffer' && Array.isArray(buffer.data)) {
        return Buffer.from(buffer.data as number[]).toString('utf8');
      }
      return value;
    },
  );
}
