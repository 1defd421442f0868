// Background blur's cost per frame (issue 18): web/blur.js's pipeline as the
// web client runs it (MediaStreamTrackProcessor -> web/blur-worker.js ->
// MediaStreamTrackGenerator, the model and runtime from the server's /blur/),
// on Chromium's fake camera in headless Chromium, at each capture size given.
// Per size: a warm-up (the model loads), then a window in which it reads
//  - the worker's own timings: ms per segmentation, ms per composite (drawing
//    and making the output VideoFrame), frames and segmentations a second;
//  - the CPU time (utime + stime from /proc) of the renderer's
//    DedicatedWorker threads over the window, divided by the frames: what a
//    frame really costs the machine, waits for the CPU excluded.
// With --person the camera is e2e/person-video.js's drawn person (which the
// model finds) instead of Chromium's fake camera (no person: the mask is all
// background). See docs/benchmarks.md, Background blur.
//
// node bench/blur.mjs [WxH ...] [--seconds N] [--person]   (default 1280x720 640x360, 20 s)

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBrowser, startServer } from '../e2e/harness.js';
import { personVideo } from '../e2e/person-video.js';

const args = process.argv.slice(2);
const person = args.includes('--person');
if (person) args.splice(args.indexOf('--person'), 1);
const at = args.indexOf('--seconds');
const seconds = at >= 0 ? Number(args.splice(at, 2)[1]) : 20;
const sizes = (args.length ? args : ['1280x720', '640x360']).map((s) => s.split('x').map(Number));
/** Clock ticks a second, the unit of /proc's CPU times. */
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The pids of the processes whose command line names `needle`, and all their descendants. */
function processTree(needle) {
  const parent = new Map();
  const roots = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) roots.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set(roots);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent) if (!tree.has(pid) && tree.has(ppid)) { tree.add(pid); grew = true; }
  }
  return [...tree];
}

/** CPU seconds of every DedicatedWorker thread of those processes. */
function workerCpu(pids) {
  let ticks = 0;
  for (const pid of pids) {
    let tasks = [];
    try { tasks = fs.readdirSync(`/proc/${pid}/task`); } catch { continue; }
    for (const tid of tasks) {
      try {
        if (!fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith('DedicatedWorker')) continue;
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(f[11]) + Number(f[12]);
      } catch {
        // thread gone
      }
    }
  }
  return ticks / TICK;
}

const server = await startServer();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-blur-bench-'));
const rows = [];
let browser = null;
try {
  for (const [width, height] of sizes) {
    // A browser per size: a file camera has the file's size only.
    const flags = [];
    if (person) {
      const file = path.join(dir, `person-${width}x${height}.y4m`);
      personVideo(file, width, height);
      flags.push(`--use-file-for-fake-video-capture=${file}`);
    }
    browser = await openBrowser('blur-bench', { flags });
    const { page } = browser;
    page.setDefaultTimeout(120_000);
    await page.goto(`${server.url}/`);
    // openBrowser's profile directory, on the browser's command line.
    const profile = 'conclave-e2e-blur-bench-';
    const stats = () => page.evaluate(async () => (await import('/assets/blur.js')).blurStats());
    // The camera's own frame rate first (frames a video element shows over 5 s), for comparison.
    const cameraFps = await page.evaluate(async ([w, h]) => {
      const { startBlur } = await import('/assets/blur.js');
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { exact: w }, height: { exact: h }, frameRate: { ideal: 30 } } });
      window.__camera = stream.getVideoTracks()[0];
      const video = document.createElement('video');
      video.muted = true;
      video.srcObject = new MediaStream([window.__camera]);
      await video.play();
      let shown = 0;
      const count = () => { shown += 1; video.requestVideoFrameCallback(count); };
      video.requestVideoFrameCallback(count);
      await new Promise((r) => setTimeout(r, 5000));
      video.srcObject = null;
      window.__blur = startBlur(window.__camera, (text) => { window.__blurError = text; });
      return shown / 5;
    }, [width, height]);
    await new Promise((r) => setTimeout(r, 8000)); // the model loads; the first stats are posted
    const pids = processTree(profile);
    const a = await stats();
    const cpuA = workerCpu(pids);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const b = await stats();
    const cpuB = workerCpu(pids);
    const took = (Date.now() - t0) / 1000;
    const error = await page.evaluate(() => window.__blurError || null);
    if (error) throw new Error(error);
    await page.evaluate(() => { window.__blur.stop(); window.__camera.stop(); });
    const frames = b.frames - a.frames;
    const segments = b.segments - a.segments;
    await browser.close();
    browser = null;
    rows.push({
      size: `${width}x${height}`,
      camera: person ? 'person' : 'fake',
      cameraFps: +cameraFps.toFixed(1),
      fps: +(frames / took).toFixed(1),
      segmentationsPerS: +(segments / took).toFixed(1),
      msPerSegmentation: +((b.segmentMs - a.segmentMs) / segments).toFixed(1),
      msPerComposite: +((b.compositeMs - a.compositeMs) / frames).toFixed(1),
      workerMsPerFrame: +(((b.segmentMs - a.segmentMs) + (b.compositeMs - a.compositeMs)) / frames).toFixed(1),
      workerCpuMsPerFrame: +(((cpuB - cpuA) * 1000) / frames).toFixed(1),
      workerCpuShare: +((cpuB - cpuA) / took).toFixed(2),
      segmentEveryMs: Math.round(b.segmentEveryMs),
      load: os.loadavg()[0].toFixed(2),
    });
    console.log(JSON.stringify(rows.at(-1)));
  }
} finally {
  if (browser) await browser.close();
  await server.stop('blur-bench-server.log');
  fs.rmSync(dir, { recursive: true, force: true });
}
