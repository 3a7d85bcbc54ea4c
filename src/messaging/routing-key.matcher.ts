/**
 * AMQP topic matching: words are separated by `.`, `*` matches exactly one word and `#` zero or
 * more. Used to pick the handler for a delivery when several handlers share a queue, and to
 * notice routing keys that reached a queue but match no handler.
 */
export function compileTopicPattern(pattern: string): (routingKey: string) => boolean {
  if (!pattern.includes('*') && !pattern.includes('#')) return (key) => key === pattern;
  const words = toWords(pattern);
  return (routingKey) => matchWords(words, 0, toWords(routingKey), 0);
}

// RabbitMQ treats the empty routing key as zero words: '#' matches it, '*' does not.
function toWords(key: string): string[] {
  return key === '' ? [] : key.split('.');
}

function matchWords(
  pattern: readonly string[],
  p: number,
  key: readonly string[],
  k: number,
): boolean {
  while (p < pattern.length) {
    const word = pattern[p];
    if (word === '#') {
      // '#' swallows zero or more words: try every split point for the rest of the pattern
      for (let skip = k; skip <= key.length; skip++) {
        if (matchWords(pattern, p + 1, key, skip)) return true;
      }
      return false;
    }
    if (k >= key.length || (word !== '*' && word !== key[k])) return false;
    p++;
    k++;
  }
  return k === key.length;
}
