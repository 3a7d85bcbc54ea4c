import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PRODUCTION_NODE_ARGS } from '../../e2e/support/service.process.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');

/** The tests and the benchmark start the service as production does: with the same Node options. */
describe('production Node options', () => {
  it('are the same in `npm start`, the Dockerfile and the service the tests start', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.start).toBe(`node ${PRODUCTION_NODE_ARGS.join(' ')} dist/main.js`);

    const dockerfile = readFileSync(join(ROOT, 'docker', 'Dockerfile'), 'utf8');
    const cmd = dockerfile.split('\n').find((line) => line.startsWith('CMD '));
    expect(JSON.parse(cmd?.slice('CMD '.length) ?? 'null')).toEqual([
      'node',
      ...PRODUCTION_NODE_ARGS,
      'dist/main.js',
    ]);
  });
});
