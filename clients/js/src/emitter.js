// @ts-check
/** @param {unknown} err */
function rethrowLater(err) {
  setTimeout(() => {
    throw err;
  }, 0);
}

/**
 * A small typed event emitter: `on` returns the function that removes the listener.
 *
 * A listener that throws does not stop the others, nor the client's own processing: the error is
 * rethrown from a fresh task, so it still shows up as an uncaught error.
 *
 * @template {Record<string, (...args: any[]) => void>} M  event name → listener signature
 */
export class Emitter {
  /**
   * @param {(error: unknown) => void} [reportError]  what to do with an error a listener threw
   *   (default: rethrow it from a fresh task)
   */
  constructor(reportError = rethrowLater) {
    /** @type {Map<keyof M, Set<(...args: any[]) => void>>} */
    this._listeners = new Map();
    /** @private */
    this._reportError = reportError;
  }

  /**
   * @template {keyof M} K
   * @param {K} event
   * @param {M[K]} listener
   * @returns {() => void} removes this listener (calling it twice is harmless)
   */
  on(event, listener) {
    if (typeof listener !== "function") {
      throw new TypeError("a listener must be a function");
    }
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    // Wrapped, so that the same function added twice is two listeners, each removed by its own
    // unsubscribe function.
    /** @type {(...args: any[]) => void} */
    const entry = (...args) => listener(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /**
   * Like `on`, but the listener runs at most once.
   * @template {keyof M} K
   * @param {K} event
   * @param {M[K]} listener
   * @returns {() => void}
   */
  once(event, listener) {
    /** @type {() => void} */
    const off = this.on(event, /** @type {M[K]} */ ((...args) => {
      off();
      listener(...args);
    }));
    return off;
  }

  /**
   * @template {keyof M} K
   * @param {K} event
   * @param {Parameters<M[K]>} args
   */
  emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        this._reportError(err);
      }
    }
  }

  /**
   * @param {keyof M} event
   * @returns {number}
   */
  listenerCount(event) {
    return this._listeners.get(event)?.size ?? 0;
  }

  removeAll() {
    this._listeners.clear();
  }
}
