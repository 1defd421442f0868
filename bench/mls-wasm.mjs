// MLS at size in the browser (issue 23): the E2EE wasm module the web client runs, in headless
// Chromium, as one member of a group of 100, 300 and 1,000 whose delivery service and other
// members are native (bench/mls_wasm_peer.rs). Times the browser member joining (Welcome and
// the server's ratchet tree), processing a commit and creating an update commit, with member 1
// doing the same natively in the same run. See bench/mls-wasm and docs/benchmarks.md.
//
// node bench/mls-wasm.mjs [SIZE ...]   (default 100 300 1000)

import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT, openBrowser, startServer } from '../e2e/harness.js';

const peerBin = process.env.MLS_WASM_PEER
  || path.join(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'release/examples/mls_wasm_peer');
const sizes = process.argv.slice(2);

// The server only serves the wasm module and its glue (/e2ee/conclave_e2ee.js), as to the web client.
const server = await startServer();
const browser = await openBrowser('mls-wasm', { denyMedia: true });
const { page } = browser;
page.setDefaultTimeout(120_000);
const reports = [];
let peer;
try {
  await page.goto(`${server.url}/`);
  await page.evaluate(async () => {
    const m = await import('/e2ee/conclave_e2ee.js');
    await m.default();
    const toB64 = (a) => {
      let s = '';
      for (let i = 0; i < a.length; i += 0x8000) s += String.fromCharCode(...a.subarray(i, i + 0x8000));
      return btoa(s);
    };
    const fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    let member = null;
    // One request of the native peer; the member lives in the page between requests.
    window.__mlsBench = (req) => {
      const t0 = performance.now();
      switch (req.op) {
        case 'new':
          member = new m.Member(req.id);
          return { bytes: toB64(member.keyPackage()) };
        case 'join':
          member.join(fromB64(req.welcome), fromB64(req.tree));
          return { ms: performance.now() - t0 };
        case 'handle': {
          const r = member.handle(fromB64(req.message));
          return { ms: performance.now() - t0, kind: r.kind };
        }
        case 'update': {
          const out = member.update();
          const ms = performance.now() - t0;
          return { ms, bytes: toB64(out.commit) };
        }
        case 'confirm':
          member.confirmCommit();
          return {};
        default:
          throw new Error(`unknown op ${req.op}`);
      }
    };
  });
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1]);
  console.error(`Chromium ${version}; native peer ${peerBin}`);

  peer = spawn(peerBin, sizes, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => peer.on('exit', (code) => resolve(code)));
  const lines = readline.createInterface({ input: peer.stdout });
  for await (const line of lines) {
    const req = JSON.parse(line);
    let answer = {};
    if (req.op === 'report') {
      const { op, ...figures } = req;
      reports.push(figures);
      console.error(JSON.stringify(figures));
    } else if (req.op === 'done') {
      peer.stdin.end(`${JSON.stringify({})}\n`);
      break;
    } else {
      answer = await page.evaluate((r) => {
        try {
          return window.__mlsBench(r);
        } catch (e) {
          return { error: String(e) };
        }
      }, req);
    }
    peer.stdin.write(`${JSON.stringify(answer)}\n`);
  }
  const code = await exited;
  if (code !== 0) throw new Error(`the native peer exited with ${code}`);
} finally {
  if (peer && peer.exitCode === null) peer.kill();
  await browser.close();
  await server.stop('mls-wasm-server.log');
}

const f = (x) => (x >= 10 ? x.toFixed(0) : x.toFixed(2));
console.log(JSON.stringify(reports));
console.log('| members | commit | tree | join, wasm | process, wasm / native | update commit, wasm / native |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of reports) {
  console.log(`| ${r.members} | ${r.commit_bytes} B | ${r.tree_bytes} B | ${f(r.wasm_join_ms)} ms | ${f(r.wasm_process_ms)} / ${f(r.native_process_ms)} ms | ${f(r.wasm_create_ms)} / ${f(r.native_create_ms)} ms |`);
}
