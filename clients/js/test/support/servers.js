// Real processes for the tests: the rollcall binary (ROLLCALL_BIN, default
// ../../target/debug/rollcall from clients/js) and private redis-server instances, each on a free
// loopback port. Every process started here is killed by `killAll()` (call it from `after`), and
// with SIGKILL when the test process exits, whatever the way.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const JS_DIR = path.resolve(here, "../..");
export const ROLLCALL_BIN = process.env.ROLLCALL_BIN ?? path.resolve(JS_DIR, "../../target/debug/rollcall");

/** @type {Set<{ child: import("node:child_process").ChildProcess, dir?: string }>} */
const running = new Set();

process.on("exit", () => {
  for (const p of running) {
    try {
      p.child.kill("SIGCONT");
      p.child.kill("SIGKILL");
    } catch {
      // Gone already.
    }
    if (p.dir) rmSync(p.dir, { recursive: true, force: true });
  }
});

// An interrupted run (Ctrl-C, a harness timeout) still goes through the 'exit' handler above.
for (const sig of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
  process.once(sig, () => process.exit(130));
}

/** Kills every process this file started and waits for them to exit. */
export async function killAll() {
  const all = [...running];
  await Promise.all(
    all.map(async (p) => {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        const exited = new Promise((resolve) => p.child.once("exit", resolve));
        p.child.kill("SIGCONT");
        p.child.kill("SIGKILL");
        await exited;
      }
      running.delete(p);
      if (p.dir) rmSync(p.dir, { recursive: true, force: true });
    }),
  );
}

/** A port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns a truthy value (returned), or fails after `timeoutMs` with
 * `message` (and what `describe()` says about the state at that moment).
 * @template T
 * @param {() => T | Promise<T>} check
 * @param {{ timeoutMs?: number, message: string, describe?: () => unknown, intervalMs?: number }} options
 * @returns {Promise<T>}
 */
export async function waitFor(check, { timeoutMs = 5000, message, describe, intervalMs = 10 }) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const state = describe ? `\nstate: ${JSON.stringify(describe(), null, 1)}` : "";
      const err = lastError ? `\nlast error: ${lastError}` : "";
      throw new Error(`timed out after ${timeoutMs} ms: ${message}${state}${err}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * Resolves with the arguments of the first `event` of `target` (anything with `on` returning an
 * unsubscribe function) that satisfies `predicate`, or rejects after `timeoutMs`.
 * @param {{ on: (event: any, listener: any) => () => void }} target
 * @param {string} event
 * @param {{ timeoutMs?: number, message?: string, predicate?: (...args: any[]) => boolean }} [options]
 * @returns {Promise<any[]>}
 */
export function nextEvent(target, event, { timeoutMs = 5000, message, predicate = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${message ?? `event ${event}`}`));
    }, timeoutMs);
    const off = target.on(event, (...args) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/**
 * @param {string} url
 * @param {Record<string, string>} [headers]
 * @returns {Promise<{ status: number, body: any, headers: Headers, text: string }>}
 */
export async function getJson(url, headers = {}) {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON.
  }
  return { status: response.status, body, headers: response.headers, text };
}

/** A private, empty redis-server on a free port that persists nothing. */
/**
 * The arguments of an instance on the shared Redis at `redisUrl`, with the given liveness and,
 * when `graceMs` is given, resume grace (else the server's default).
 * @param {string} redisUrl
 * @param {{ leaseMs: number, heartbeatMs: number, graceMs?: number }} timing
 * @returns {string[]}
 */
export function instanceArgs(redisUrl, { leaseMs, heartbeatMs, graceMs }) {
  const args = ["--redis-url", redisUrl, "--lease-ms", String(leaseMs), "--heartbeat-ms", String(heartbeatMs)];
  if (graceMs !== undefined) args.push("--resume-grace-ms", String(graceMs));
  return args;
}

export async function startRedis() {
  const which = spawnSync("redis-server", ["--version"]);
  if (which.error) throw new Error("redis-server is not installed (Debian: apt-get install redis-server)");
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    const entry = { child };
    running.add(entry);
    const up = await waitFor(async () => child.exitCode !== null || (await redisPing(port)), {
      timeoutMs: 5000,
      message: `redis-server on port ${port} to answer PING`,
    }).catch(() => false);
    if (up && child.exitCode === null) {
      return { port, url: `redis://127.0.0.1:${port}/`, kill: () => child.kill("SIGKILL") };
    }
    child.kill("SIGKILL");
    running.delete(entry);
  }
  throw new Error("could not start a private redis-server");
}

/** @param {number} port */
function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.setTimeout(500);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * @typedef {object} Rollcall
 * @property {string} name
 * @property {number} port
 * @property {string} ws  ws://127.0.0.1:PORT/ws
 * @property {string} http  http://127.0.0.1:PORT
 * @property {import("node:child_process").ChildProcess} child
 * @property {(signal: NodeJS.Signals) => void} signal
 * @property {() => Promise<void>} stop  SIGSTOP, then waits until every thread is stopped
 * @property {() => void} cont  SIGCONT
 * @property {(timeoutMs?: number) => Promise<number | null>} exited  resolves with the exit code
 * @property {() => string} log  the last lines of its log
 */

/**
 * Starts the rollcall binary on a free port (or on `port`, to restart an instance where its clients
 * look for it: its instance name, `${name}-${port}`, is then the same too) and waits until
 * `/readyz` answers 200.
 * @param {{ name?: string, args?: string[], env?: Record<string, string>, port?: number }} [options]
 * @returns {Promise<Rollcall>}
 */
export async function startRollcall({ name = "rc", args = [], env = {}, port: wantedPort } = {}) {
  if (!existsSync(ROLLCALL_BIN)) {
    throw new Error(`no rollcall binary at ${ROLLCALL_BIN}: run \`cargo build --bin rollcall\` or set ROLLCALL_BIN`);
  }
  let lastLog = "";
  for (let tries = 0; tries < 3; tries++) {
    if (wantedPort !== undefined) {
      // The process that had the port may still be letting it go.
      await waitFor(() => portIsFree(wantedPort), {
        timeoutMs: 10000,
        message: `port ${wantedPort} to be free for rollcall ${name}`,
        intervalMs: 50,
      });
    }
    const port = wantedPort ?? (await freePort());
    const dir = mkdtempSync(path.join(tmpdir(), "rollcall-js-"));
    const logPath = path.join(dir, "rollcall.log");
    const logFd = openSync(logPath, "a");
    const child = spawn(
      ROLLCALL_BIN,
      [
        "--bind",
        `127.0.0.1:${port}`,
        "--database-url",
        `sqlite://${dir}/x.db`,
        "--instance-name",
        `${name}-${port}`,
        ...args,
      ],
      {
        stdio: ["ignore", logFd, logFd],
        env: { ...process.env, RUST_LOG: "info", ...env },
      },
    );
    const entry = { child, dir };
    running.add(entry);
    const log = () => {
      try {
        return readFileSync(logPath, "utf8").split("\n").slice(-30).join("\n");
      } catch {
        return "";
      }
    };
    const http = `http://127.0.0.1:${port}`;
    const ready = await waitFor(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) return "exited";
        const r = await fetch(`${http}/readyz`, { signal: AbortSignal.timeout(1000) });
        return r.status === 200 ? "ready" : false;
      },
      { timeoutMs: 20000, message: `rollcall ${name} to be ready on port ${port}`, intervalMs: 25 },
    ).catch((e) => `timeout: ${e.message}`);
    if (ready === "ready") {
      return {
        name,
        port,
        ws: `ws://127.0.0.1:${port}/ws`,
        http,
        child,
        signal: (sig) => {
          child.kill(sig);
        },
        // kill() returns before the target has stopped: wait until /proc says every thread is.
        stop: async () => {
          child.kill("SIGSTOP");
          await waitFor(() => allThreadsStopped(/** @type {number} */ (child.pid)), {
            timeoutMs: 5000,
            message: `rollcall ${name} to be stopped after SIGSTOP`,
          });
        },
        cont: () => {
          child.kill("SIGCONT");
        },
        exited: (timeoutMs = 10000) =>
          new Promise((resolve, reject) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
            const timer = setTimeout(
              () => reject(new Error(`rollcall ${name} did not exit within ${timeoutMs} ms:\n${log()}`)),
              timeoutMs,
            );
            child.once("exit", (code) => {
              clearTimeout(timer);
              resolve(code);
            });
          }),
        log,
      };
    }
    lastLog = log();
    child.kill("SIGKILL");
    await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once("exit", resolve)));
    running.delete(entry);
    rmSync(dir, { recursive: true, force: true });
    if (!/could not listen|Address already in use/i.test(lastLog)) {
      throw new Error(`rollcall ${name} did not become ready (${ready}):\n${lastLog}`);
    }
  }
  throw new Error(`rollcall ${name} could not bind a free port:\n${lastLog}`);
}

/**
 * Whether a listener could bind `port` on the loopback address now.
 * @param {number} port
 * @returns {Promise<boolean>}
 */
function portIsFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * Whether every thread of `pid` is in state T (stopped), from /proc.
 * @param {number} pid
 */
function allThreadsStopped(pid) {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    // The state follows the parenthesised command name.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
  });
}

/**
 * Mints an HS256 JWT as the server expects (docs/protocol.md §1.2).
 * @param {string} secret
 * @param {{ sub: string, exp: number, name?: string, sessions?: string[] }} claims
 */
export async function mintToken(secret, claims) {
  const { createHmac } = await import("node:crypto");
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
