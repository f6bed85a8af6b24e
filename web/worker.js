// One Web Worker: its own instance of the wasm factorizer. It factors one
// chunk at a time in slices; between slices it sleeps to honour the CPU duty
// cycle and reads messages (duty changes, cancels).
import init, { ChunkJob } from './pkg/crowdfactor_wasm.js';

const ready = init();
let duty = 1;
const cancelled = new Set();
const queue = [];
let busy = false;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(id, frame) {
  const job = new ChunkJob(frame);
  const started = performance.now();
  let batch = 4;
  for (;;) {
    const t0 = performance.now();
    const done = job.step(batch);
    const dt = performance.now() - t0;
    // Keep slices around 10-30 ms: fine enough for smooth throttling.
    if (dt < 10) batch = Math.min(batch * 2, 1 << 16);
    else if (dt > 30 && batch > 1) batch = Math.ceil(batch / 2);
    if (cancelled.delete(id)) {
      job.free();
      self.postMessage({ type: 'dropped', id });
      return;
    }
    if (done) break;
    // Sleep so that work / (work + sleep) == duty; at 100 % still yield now
    // and then so messages get through.
    if (duty < 1) await sleep((dt * (1 - duty)) / duty);
    else if (dt > 5) await sleep(0);
  }
  self.postMessage({ type: 'result', id, frame: job.finish(performance.now() - started) });
}

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const { id, frame } = queue.shift();
    try {
      await run(id, frame);
    } catch (err) {
      self.postMessage({ type: 'error', id, message: String((err && err.message) || err) });
    }
  }
  busy = false;
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'duty') {
    duty = Math.min(1, Math.max(0.05, msg.value));
  } else if (msg.type === 'cancel') {
    const i = queue.findIndex((c) => c.id === msg.id);
    if (i >= 0) queue.splice(i, 1);
    else cancelled.add(msg.id);
  } else if (msg.type === 'chunk') {
    await ready;
    queue.push({ id: msg.id, frame: msg.frame });
    pump();
  }
};

ready.then(() => self.postMessage({ type: 'ready' }),
           (err) => self.postMessage({ type: 'error', id: null, message: String(err) }));
