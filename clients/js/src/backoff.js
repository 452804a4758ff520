// @ts-check
/**
 * Full-jitter exponential backoff (as in the AWS architecture blog's "Exponential Backoff And
 * Jitter", and centrifuge-js): the n-th retry waits a random time in [0, min(max, min·2ⁿ)], but at
 * least `min`. Retries count from 1 after the last successful `welcome`.
 *
 * @param {number} retry  1 for the first retry after a connection was lost (or failed)
 * @param {number} minMs
 * @param {number} maxMs
 * @param {() => number} [random]  a source of numbers in [0, 1)
 * @returns {number} the delay in milliseconds
 */
export function reconnectDelay(retry, minMs, maxMs, random = Math.random) {
  const n = Math.max(0, retry);
  const cap = Math.min(maxMs, minMs * 2 ** n);
  return Math.max(minMs, Math.floor(random() * cap));
}
