/** The lock's part of the public API (re-exported by src/index.ts). */
export type { Lock } from './lease.js';
export type { ReleaseOutcome } from './lock.backend.js';
export { LockLostError, LockTimeoutError, LockUnavailableError } from './lock.errors.js';
export type { LockLossReason } from './lock.errors.js';
export { type AcquireOptions, LockService } from './lock.service.js';
