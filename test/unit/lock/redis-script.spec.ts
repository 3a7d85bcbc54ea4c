import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedisScript } from '../../../src/lock/redis-script.js';

const SCRIPTS = join(import.meta.dirname, '..', '..', '..', 'src', 'lock', 'scripts');

describe('RedisScript.load', () => {
  it('names the script and its keys from the file name, as <command>-<keys>.lua', () => {
    const script = RedisScript.load('commit-4.lua', { effect: 'return 1' });
    expect([script.name, script.numberOfKeys]).toEqual(['commit', 4]);
    expect(script.sha).toMatch(/^[0-9a-f]{40}$/);
  });

  it('replaces each include line with the include, so the script defines what it uses', () => {
    const { lua } = RedisScript.load('lock-ops-0.lua');
    expect(lua).not.toContain('-- @include');
    expect(lua).toContain('local function nextFence(fenceKey, fenceTtlMs, proposed)');
    expect(lua.indexOf('local function nextFence')).toBeLessThan(lua.indexOf('nextFence(fence,'));
  });

  it("puts a commit's effect where its placeholder stands, and refuses a missing placeholder", () => {
    const { lua } = RedisScript.load('commit-4.lua', {
      effect: "return redis.call('INCR', keys[1])",
    });
    expect(lua).not.toContain('-- @effect');
    expect(lua).toContain(
      "local effect = function(keys, args, fence)\nreturn redis.call('INCR', keys[1])\nend",
    );
    expect(() => RedisScript.load('lock-ops-0.lua', { effect: 'return 1' })).toThrow(
      'lock script lock-ops-0.lua has no -- @effect line',
    );
  });

  it('keeps an effect text with $ patterns as it is (no replacement patterns)', () => {
    const { lua } = RedisScript.load('commit-4.lua', { effect: "return '$&$1'" });
    expect(lua).toContain("return '$&$1'");
  });

  it('refuses a file name without its number of keys', () => {
    expect(() => RedisScript.load('acquire.lua')).toThrow(/<command>-<keys>\.lua/);
  });

  it('gives every script a header that documents its KEYS, as many as its name says', () => {
    for (const file of readdirSync(SCRIPTS).filter((f) => f.endsWith('.lua'))) {
      const text = readFileSync(join(SCRIPTS, file), 'utf8');
      const declared = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
      for (let key = 1; key <= declared; key++) expect(text).toContain(`KEYS[${key}] `);
      expect(text).toMatch(/^--\[\[/);
      expect(text).toContain('Output:');
    }
  });
});
