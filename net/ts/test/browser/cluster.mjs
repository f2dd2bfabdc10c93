// A real oxworld cluster for browser tests: a generated config on free loopback ports in a temp
// directory, started and stopped with the `oxworld` CLI from the built binaries (never cargo).
//
//   const cluster = await startCluster({ gameDir: "demo/chatroom" });
//   // cluster.httpUrl: the gate's page, cluster.wsUrl + cluster.serverKey: its WebSocket
//   await cluster.stop();
//
// The binaries come from $OXWORLD_BIN_DIR, else <repo>/target/debug. The CLI runs with the
// repository root as its working directory, so the gate's `web_root = web` is the game
// directory's web/.

import { execFile, execFileSync } from "node:child_process";
import dgram from "node:dgram";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is net/ts/test/browser/cluster.mjs). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/** Where the built binaries are. */
export function binDir() {
  return resolve(process.env.OXWORLD_BIN_DIR || join(repoRoot, "target", "debug"));
}

/** The path of built binary `name`; throws "build first" when it is missing. */
export function binary(name) {
  const p = join(binDir(), name);
  if (!existsSync(p)) {
    throw new Error(`${p} is missing; build first: cargo build --workspace (or set OXWORLD_BIN_DIR to the binaries' directory)`);
  }
  return p;
}

/** Listens on a free loopback port (TCP or UDP) and keeps it until `close()`. */
function holdPort(kind) {
  return new Promise((resolvePort, reject) => {
    if (kind === "udp") {
      const s = dgram.createSocket("udp4");
      s.once("error", reject);
      s.bind(0, "127.0.0.1", () => resolvePort({ port: s.address().port, close: () => new Promise((r) => s.close(r)) }));
    } else {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolvePort({ port: s.address().port, close: () => new Promise((r) => s.close(r)) }));
    }
  });
}

/** Distinct free loopback ports, one per entry of `kinds` ("tcp" | "udp"): all are held until every one is picked. */
async function freePorts(kinds) {
  const held = [];
  try {
    for (const k of kinds) held.push(await holdPort(k));
    return held.map((h) => h.port);
  } finally {
    await Promise.all(held.map((h) => h.close()));
  }
}

/** Runs the `oxworld` CLI from the repository root; resolves with its stdout, rejects with its output. */
function oxworld(args, timeoutMs = 60_000) {
  return new Promise((resolveRun, reject) => {
    execFile(binary("oxworld"), args, { cwd: repoRoot, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const how = err.killed ? `killed after ${timeoutMs} ms` : `exit ${err.code}`;
        reject(new Error(`oxworld ${args.join(" ")}: ${how}\n${stdout}${stderr}`));
      } else {
        resolveRun(stdout);
      }
    });
  });
}

/** The last lines of every log in the run directory (for a failed start). */
function logTails(runDir, lines = 15) {
  if (!existsSync(runDir)) return "";
  return readdirSync(runDir)
    .filter((f) => f.endsWith(".log"))
    .map((f) => {
      const text = readFileSync(join(runDir, f), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
      return `--- ${f}\n${text}`;
    })
    .join("\n");
}

/**
 * Starts a cluster running the game of `gameDir` (relative to the repository root, e.g.
 * "demo/chatroom"): one dispatcher, `games` games, one gate with TCP, WebSocket and KCP
 * listeners and `web_root = web`, storage in a fresh temp directory.
 *
 * Resolves with `{ httpUrl, wsUrl, serverKey, config, runDir, dir, stop() }` once every process
 * is ready. `stop()` stops the cluster gracefully (SIGKILL if that fails) and removes the temp
 * directory; it can be called more than once. A cluster that was not stopped is killed when
 * the Node process exits.
 */
export async function startCluster({ gameDir, games = 1, gate = [] }) {
  if (!gameDir) throw new TypeError("startCluster: give gameDir, e.g. \"demo/chatroom\"");
  const absGame = resolve(repoRoot, gameDir);
  if (!existsSync(join(absGame, "Cargo.toml"))) throw new Error(`${absGame} is not a game directory`);
  const bins = binDir();
  for (const b of ["oxworld", "oxworld-dispatcher", "oxworld-gate", basename(absGame)]) binary(b);

  const dir = mkdtempSync(join(tmpdir(), "oxworld-browser-"));
  const config = join(dir, "oxworld.ini");
  const runDir = join(dir, "run");
  const [gatePort, wsPort, dispatcherPort, kcpPort] = await freePorts(["tcp", "tcp", "tcp", "udp"]);
  writeFileSync(
    config,
    [
      "[deployment]",
      "desired_dispatchers = 1",
      `desired_games = ${games}`,
      "desired_gates = 1",
      "secret = browser-test",
      "[gate1]",
      `listen_addr = 127.0.0.1:${gatePort}`,
      `ws_addr = 127.0.0.1:${wsPort}`,
      `kcp_addr = 127.0.0.1:${kcpPort}`,
      "web_root = web",
      ...gate,
      "[storage]",
      `dir = ${join(dir, "store")}`,
      `freeze_dir = ${join(dir, "freeze")}`,
      "[dispatcher1]",
      `listen_addr = 127.0.0.1:${dispatcherPort}`,
      "",
    ].join("\n"),
  );
  const common = [gameDir, "--config", config, "--run-dir", runDir, "--bin-dir", bins];

  let stopped = false;
  // Last resort: never leave processes behind when the test process ends without stop().
  const killOnExit = () => {
    if (stopped) return;
    try {
      execFileSync(join(bins, "oxworld"), ["kill", ...common], { cwd: repoRoot, stdio: "ignore", timeout: 10_000 });
    } catch {
      // Nothing more to do while exiting.
    }
    if (!process.env.OXWORLD_KEEP_RUN) rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);

  async function stop() {
    if (stopped) return;
    stopped = true;
    process.removeListener("exit", killOnExit);
    try {
      await oxworld(["stop", ...common, "--grace", "5"], 30_000);
    } catch (e) {
      console.error(`# graceful stop failed, killing: ${e.message}`);
      await oxworld(["kill", ...common], 15_000).catch((k) => console.error(`# kill failed: ${k.message}`));
    }
    if (!process.env.OXWORLD_KEEP_RUN) rmSync(dir, { recursive: true, force: true });
    else console.log(`# cluster files kept in ${dir}`);
  }

  try {
    const keys = await oxworld(["keygen", "--config", config]);
    const serverKey = /^gate1: ([0-9a-f]{64})\b/m.exec(keys)?.[1];
    if (!serverKey) throw new Error(`oxworld keygen printed no key for gate1:\n${keys}`);
    const out = await oxworld(["start", ...common, "--no-build"], 90_000);
    // A game with a web page is offered at the gate's WebSocket address; one without (echo)
    // is reached at the same address.
    const hasPage = existsSync(join(absGame, "web", "index.html"));
    const offered = /gate1: open (http:\/\/\S+) in a browser/.exec(out)?.[1];
    if (hasPage && !offered) throw new Error(`oxworld start did not offer ${gameDir}'s page:\n${out}`);
    const httpUrl = offered ?? `http://127.0.0.1:${wsPort}/`;
    const info = await (await fetch(new URL("/oxworld.json", httpUrl))).json();
    if (info.server_key !== serverKey) throw new Error(`/oxworld.json gives key ${info.server_key}, keygen printed ${serverKey}`);
    const wsUrl = `ws://${new URL(httpUrl).host}/`;
    return { httpUrl, wsUrl, serverKey, config, runDir, dir, stop };
  } catch (e) {
    const logs = logTails(runDir);
    await stop();
    throw new Error(`${e.message}${logs ? `\n${logs}` : ""}`, { cause: e });
  }
}
