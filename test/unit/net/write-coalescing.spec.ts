import { describe, it, expect } from 'vitest';
import { Duplex } from 'node:stream';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { coalesceWrites } from '../../../src/net/write-coalescing.js';

/** A socket stand-in that records how its writes reach the "wire": one entry per system call. */
class RecordingSocket extends Duplex {
  readonly calls: string[][] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.calls.push([chunk.toString()]);
    callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: () => void): void {
    this.calls.push(chunks.map((c) => c.chunk.toString()));
    callback();
  }

  override _read(): void {}
}

describe('coalesceWrites', () => {
  it('sends what one pass of the event loop wrote, promise jobs included, in one writev', async () => {
    const socket = new RecordingSocket();
    coalesceWrites(socket);
    socket.write('a');
    await Promise.resolve();
    socket.write('b');
    void Promise.resolve().then(() => socket.write('c'));
    expect(socket.calls).toEqual([]);
    await nextMacrotask();
    expect(socket.calls).toEqual([['a', 'b', 'c']]);
  });

  it('keeps passes apart and leaves nothing corked between them', async () => {
    const socket = new RecordingSocket();
    coalesceWrites(socket);
    socket.write('one');
    await nextMacrotask();
    socket.write('two');
    socket.write('three');
    await nextMacrotask();
    expect(socket.calls).toEqual([['one'], ['two', 'three']]);
    expect(socket.writableCorked).toBe(0);
  });

  it('patches a socket once, however often it is asked', async () => {
    const socket = new RecordingSocket();
    coalesceWrites(socket);
    coalesceWrites(socket);
    socket.write('x');
    socket.write('y');
    await nextMacrotask();
    expect(socket.calls).toEqual([['x', 'y']]);
    expect(socket.writableCorked).toBe(0);
  });
});
