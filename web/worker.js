// One Web Worker: its own instance of the wasm factorizer. It factors one
// chunk at a time in slices; between slices it sleeps to honour the CPU duty
// cycle and reads messages (duty changes, cancels).
import init, { ChunkJob, warm_up } from './pkg/crowdfactor_wasm.js';

// A module with one i64.mul_wide_u (the wide-arithmetic proposal): it
// validates only where the browser implements the proposal, and there the
// factorizer built for it (64×64→128-bit multiplies) runs 1.15–2.5× faster.
const WIDE_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x02, 0x7e, 0x7e, 0x02, 0x7e, 0x7e, // type (i64 i64) -> (i64 i64)
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0a, 0x01, 0x08, 0x00, 0x20, 0x00, 0x20, 0x01, 0xfc, 0x16, 0x0b, // local.get 0 1; i64.mul_wide_u
]);

// Which build runs: 'wide' or 'standard'.
async function load() {
  if (WebAssembly.validate(WIDE_PROBE)) {
    try {
      await init({ module_or_path: new URL('./pkg/crowdfactor_wasm_wide_bg.wasm', import.meta.url) });
      return 'wide';
    } catch (err) {
      console.warn('wide-arithmetic build unavailable; using the standard one', err);
    }
  }
  await init();
  return 'standard';
}

// Tables built and code compiled before the first chunk arrives.
const ready = load().then((engine) => {
  warm_up();
  return engine;
});
let duty = 1;
const cancelled = new Set();
const queue = [];
let busy = false;
let running = null; // the id of the chunk being factored

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A turn of the event loop without a timer, so that messages (duty
// changes, cancels) get through between slices at full speed: a timeout
// set from a timeout's callback, as each slice's would be, waits at least
// 4 ms from the fifth on (HTML's timer clamping) — 3.8 ms after every
// 20 ms slice in Chromium 156, a sixth of the Web Worker's time.
const turn = new MessageChannel();
const turned = [];
turn.port1.onmessage = () => turned.shift()();
const yieldToEvents = () => new Promise((resolve) => {
  turned.push(resolve);
  turn.port2.postMessage(null);
});

// Ms of sleep the duty cycle is owed, across chunks: a chunk of a few
// dozen small numbers is one slice of a fraction of a millisecond, and
// the next is queued behind it (see the page's `depthFor`).
let owed = 0;
let idleSince = performance.now();

// Sleeps so that work / (work + sleep) == duty after a slice of `dt` ms,
// counting the time timers really slept (at least 4 ms once nested, often
// a little more) against what the next slices owe — but no more than a
// slice's worth, so a long stall does not buy a long run at full speed.
// At 100 % still yields after each slice of some length (a chunk's first
// ones are tiny) so messages get through, unless it was a chunk's last.
async function rest(dt, last) {
  owed = duty < 1 ? owed + (dt * (1 - duty)) / duty : 0;
  if (owed >= 4) {
    const s0 = performance.now();
    await sleep(owed);
    owed = Math.max(owed - (performance.now() - s0), -30);
  } else if (dt > 5 && !last) {
    await yieldToEvents();
  }
}

async function run(id, frame, runs) {
  const started = performance.now();
  // Time spent waiting for this chunk was rest too.
  owed = Math.max(owed - (started - idleSince), -30);
  const job = new ChunkJob(frame, runs);
  let batch = 4;
  let t0 = started; // the slice's start (the first's includes reading the chunk)
  for (;;) {
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
    await rest(dt, false);
    t0 = performance.now();
  }
  self.postMessage({ type: 'result', id, frame: job.finish(performance.now() - started) });
  // The last slice's share (writing the result included), before the
  // next chunk starts.
  await rest(performance.now() - t0, true);
}

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const { id, frame, runs } = queue.shift();
    running = id;
    try {
      await run(id, frame, runs);
    } catch (err) {
      self.postMessage({ type: 'error', id, message: String((err && err.message) || err) });
    }
    cancelled.delete(id);
    idleSince = performance.now();
  }
  running = null;
  busy = false;
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'duty') {
    duty = Math.min(1, Math.max(0.05, msg.value));
  } else if (msg.type === 'cancel') {
    // Of a chunk neither queued nor running, the result is on its way:
    // the page drops it. (Kept, the id would drop the chunk if the page
    // gave it again, as it does with a chunk handed back on a pause and
    // leased to it again.)
    const i = queue.findIndex((c) => c.id === msg.id);
    if (i >= 0) {
      queue.splice(i, 1);
      self.postMessage({ type: 'dropped', id: msg.id });
    } else if (msg.id === running) {
      cancelled.add(msg.id);
    }
  } else if (msg.type === 'chunk') {
    await ready;
    // runs: of a chunk answered in part, the (index, count) pairs left to factor.
    queue.push({ id: msg.id, frame: msg.frame, runs: msg.runs });
    pump();
  }
};

ready.then((engine) => self.postMessage({ type: 'ready', engine }),
           (err) => self.postMessage({ type: 'error', id: null, message: String(err) }));
