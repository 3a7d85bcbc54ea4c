import type { Duplex } from 'node:stream';

const coalescing = new WeakSet<Duplex>();

/**
 * Makes what is written to `socket` in one pass of the event loop (a callback and the promise
 * jobs it sets off) go out together, in one `writev`, when that pass ends: the first write of a
 * pass corks the socket and a `process.nextTick` uncorks it, so nothing waits past the pass that
 * wrote it. A Redis client writes one command per call, amqplib one frame per call (an ack, a
 * publish's three frames); with many messages in flight that was a system call each. Idempotent
 * per socket.
 */
export function coalesceWrites(socket: Duplex): void {
  if (coalescing.has(socket)) return;
  coalescing.add(socket);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  const write = socket.write.bind(socket) as (...args: Parameters<Duplex['write']>) => boolean;
  socket.write = ((...args: Parameters<Duplex['write']>): boolean => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as Duplex['write'];
}

/** Whether {@link coalesceWrites} patched this socket. */
export function isCoalescing(socket: Duplex | undefined): boolean {
  return socket !== undefined && coalescing.has(socket);
}
