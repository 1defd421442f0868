// The engines the cluster stories run on, each the test's own on loopback:
// redis-server and PostgreSQL, started and stopped by the test, never a
// running service (see .ci/run for what installs them).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { eventually } from './harness.js';

/** Sends one Redis command (RESP) to 127.0.0.1:`port`; resolves to its bulk or simple reply as a string (null for nil). */
export function redis(port, ...args) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    s.setTimeout(2000, () => { s.destroy(); reject(new Error('redis: no answer')); });
    s.on('error', reject);
    s.on('connect', () => s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      const text = got.toString();
      const eol = text.indexOf('\r\n');
      if (eol < 0) return;
      const head = text.slice(0, eol);
      if (head[0] === '+' || head[0] === '-' || head[0] === ':') { s.destroy(); resolve(head.slice(1)); return; }
      const len = Number(head.slice(1));
      if (len < 0) { s.destroy(); resolve(null); return; }
      if (got.length >= eol + 2 + len) { s.destroy(); resolve(got.subarray(eol + 2, eol + 2 + len).toString()); }
    });
  });
}

/** Whether a Redis on `port` answers PING (false, not an error, when none does). */
export function pong(port) {
  return redis(port, 'PING').then((r) => r === 'PONG', () => false);
}

/** A redis-server of the test's own on `port`, no persistence. */
export async function startRedis(port, dir) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await eventually(() => pong(port), (ok) => ok, { what: 'redis-server answers', timeout: 10_000 });
  return proc;
}

/** Kills it outright (a crash, not a shutdown) and waits until the port no longer answers. */
export async function stopRedis(proc, port) {
  proc.kill('SIGKILL');
  await eventually(() => pong(port), (ok) => !ok, { what: 'redis-server gone', timeout: 10_000 });
}

/** A PostgreSQL of the test's own in `dir` on `port` (as the postgres user when root, as initdb wants); returns its stop. */
export function startPostgres(dir, port) {
  const bin = fs.readdirSync('/usr/lib/postgresql').sort().map((v) => `/usr/lib/postgresql/${v}/bin`).pop();
  const asRoot = process.getuid?.() === 0;
  const run = (tool, args) => {
    const [cmd, all] = asRoot ? ['runuser', ['-u', 'postgres', '--', `${bin}/${tool}`, ...args]] : [`${bin}/${tool}`, args];
    const r = spawnSync(cmd, all, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${tool}: ${r.stderr}`);
  };
  fs.mkdirSync(dir, { recursive: true });
  if (asRoot) spawnSync('chown', ['postgres:postgres', dir]);
  run('initdb', ['-D', `${dir}/data`, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
  run('pg_ctl', ['-D', `${dir}/data`, '-l', `${dir}/server.log`, '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  return () => run('pg_ctl', ['-D', `${dir}/data`, '-m', 'immediate', '-w', 'stop']);
}
