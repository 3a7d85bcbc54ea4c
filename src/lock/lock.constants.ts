/** Prefix of a lock's Redis key: `mp:lock:<key>`, holding the holder's token with a PX expiry. */
export const LOCK_KEY_PREFIX = 'mp:lock:';

/** Prefix of a lock's fence: `mp:fence:<key>`, the last fencing token issued for the key. */
export const FENCE_KEY_PREFIX = 'mp:fence:';

/**
 * Prefix of a key's effect journal: `mp:journal:<key>`, a stream of the effects committed under
 * the key (the lock key, or a queue's when its handler runs without a lock).
 */
export const JOURNAL_KEY_PREFIX = 'mp:journal:';

/**
 * A fence outlives its last lock by an hour (at least twice the lease). Its clock floor makes the
 * expiry safe: a token issued later starts from the server's clock, already past every token
 * issued before (unless the server's clock steps back by more than that hour). One fence per
 * lock key would otherwise stay forever (one per message, with the default messageId lock).
 */
export const FENCE_TTL_MS = 3_600_000;

/** Lock keys are free-form but bounded: they become Redis keys. */
export const MAX_KEY_LENGTH = 1_024;

/** Backoff between two tries of a held lock ("full jitter", as in AWS's backoff study). */
export const LOCK_BACKOFF = { baseMs: 5, capMs: 250 } as const;
