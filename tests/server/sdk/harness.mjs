// Starts `magnetar serve` on the tiny model for one test file and stops it afterwards.
//
// MAGNETAR (the binary) and MAGNETAR_TINY_MODEL (a `magnetar synth --preset tiny` file) come
// from CTest (run_sdk_tests.sh). The server binds an ephemeral port (--port 0) and the harness
// reads it from the "listening on" log line.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// `launcher`, when given, is a command line the server runs under (e.g. a shell that sets a
// resource limit and then runs "$@").
export async function startServer(args = [], env = {}, launcher = []) {
  const bin = process.env.MAGNETAR;
  const model = process.env.MAGNETAR_TINY_MODEL;
  if (!bin || !model) throw new Error('MAGNETAR and MAGNETAR_TINY_MODEL must be set');
  const command = [...launcher, bin, 'serve', '-m', model, '--port', '0', ...args];
  const proc = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr.setEncoding('utf8');
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 120000);
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on https?:\/\/[^\s:]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${log}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    port,
    url,
    log: () => log,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const [code] = await once(proc, 'exit');
      return code;
    },
  };
}

// Writes a --test-forced-completion file and returns its path.
export function forcedCompletions(map) {
  const dir = mkdtempSync(join(tmpdir(), 'magnetar-forced-'));
  const path = join(dir, 'forced.json');
  writeFileSync(path, JSON.stringify(map));
  return path;
}

// A metric's value from GET /metrics (the first sample whose line starts with `name`).
export async function metric(url, name, headers = {}) {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  if (!line) throw new Error(`${name} not in /metrics:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}
