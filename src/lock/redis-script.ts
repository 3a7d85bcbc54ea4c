import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RedisClient } from '../redis/redis.connection.js';

/** Where the `.lua` files live (next to this module, in src/ and in dist/ alike). */
const SCRIPTS_DIR = join(import.meta.dirname, 'scripts');

/** `-- @include <name>`: the whole line is replaced by `scripts/includes/<name>.lua`. */
const INCLUDE = /^-- @include ([a-z0-9-]+)$/gm;

/** `<command>-<number of keys>.lua`, as BullMQ names its commands. */
const FILE_NAME = /^([a-z][a-z0-9-]*)-(\d+)\.lua$/;

/**
 * One Lua script of the lock module, read once from `scripts/<command>-<keys>.lua` (its KEYS and
 * ARGV documented in its header) with its includes resolved, and sent by SHA: EVALSHA, and EVAL
 * when the server does not know the script yet (a restart, SCRIPT FLUSH), which also caches it.
 * The one way the service sends a script.
 */
export class RedisScript {
  readonly sha: string;

  private constructor(
    /** The script's name, for errors: its file name without the extension. */
    readonly name: string,
    readonly lua: string,
    /** Keys the script declares in its file name; a commit's effect adds its own after them. */
    readonly numberOfKeys: number,
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  /**
   * Reads `scripts/<file>`, resolving its includes. `placeholders` replaces lines
   * `-- @<name>` (a commit's effect) with the text given.
   */
  static load(file: string, placeholders: Readonly<Record<string, string>> = {}): RedisScript {
    const match = FILE_NAME.exec(file);
    if (!match) throw new Error(`lock script file name must be <command>-<keys>.lua: ${file}`);
    let lua = readFileSync(join(SCRIPTS_DIR, file), 'utf8').replace(INCLUDE, (_line, name) =>
      readFileSync(join(SCRIPTS_DIR, 'includes', `${String(name)}.lua`), 'utf8'),
    );
    for (const [name, text] of Object.entries(placeholders)) {
      const line = `-- @${name}`;
      if (!lua.includes(line)) throw new Error(`lock script ${file} has no ${line} line`);
      lua = lua.replace(line, () => text);
    }
    return new RedisScript(match[1], lua, Number(match[2]));
  }

  /**
   * Runs the script with `keys` (at least the declared number) and `args`, by SHA first. Rejects
   * as ioredis does: a `ReplyError` when the script raised one, anything else when the server
   * could not be asked or did not answer.
   */
  async run(
    client: RedisClient,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
