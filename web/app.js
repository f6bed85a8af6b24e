// The volunteer page's runtime: one WebSocket to the coordinator, one Web
// Worker per core. Every frame sent is built by the wasm protocol bindings.
import init, {
  hello_message, ack_message, heartbeat_message, capacity_message, release_message,
} from './pkg/crowdfactor_wasm.js';

const PAUSE_KEY = 'crowdfactor.paused';
const $ = (id) => document.getElementById(id);

const state = {
  paused: localStorage.getItem(PAUSE_KEY) === '1',
  ws: null,
  connection: 'connecting',
  workers: [],        // { worker, chunk: {id, count} | null, ready }
  queue: [],          // assignments received but not started: { id, count, frame }
  cancelled: new Set(),
  factored: 0,
  events: [],         // [time ms, numbers] for the rate
  backoff: 500,
  heartbeat: null,
  serverIdle: false,
};
const threads = Math.max(1, navigator.hardwareConcurrency || 1);
// Two chunks per worker: one computing, one waiting, so workers never idle on a round trip.
const slots = () => (state.paused ? 0 : threads * 2);

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(frame);
}

function startWorkers() {
  for (let i = 0; i < threads; i++) {
    const w = { worker: new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }), chunk: null, ready: false };
    w.worker.onmessage = (event) => onWorkerMessage(w, event.data);
    w.worker.onerror = (event) => { console.error('worker failed', event.message); };
    state.workers.push(w);
  }
}

function onWorkerMessage(w, msg) {
  if (msg.type === 'ready') { w.ready = true; pump(); render(); return; }
  const chunk = w.chunk;
  w.chunk = null;
  if (msg.type === 'result' && chunk && chunk.id === msg.id) {
    if (state.cancelled.delete(chunk.id)) {
      // Its job was cancelled or the chunk was done elsewhere.
    } else if (chunk.generation === state.generation) {
      send(msg.frame);
      state.factored += chunk.count;
      state.events.push([performance.now(), chunk.count]);
    }
  } else if (msg.type === 'error') {
    console.error('factorizer error', msg.message);
    if (chunk) send(release_message([chunk.id]));
  }
  pump();
  render();
}

function pump() {
  for (const w of state.workers) {
    if (state.queue.length === 0) break;
    if (w.chunk || !w.ready) continue;
    const next = state.queue.shift();
    w.chunk = { id: next.id, count: next.count, generation: state.generation };
    w.worker.postMessage({ id: next.id, frame: next.frame });
  }
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  state.ws = ws;
  state.connection = 'connecting';
  state.generation = (state.generation || 0) + 1;
  render();
  ws.onopen = () => {
    const token = new URLSearchParams(location.search).get('token') || undefined;
    ws.send(hello_message(slots(), threads, `crowdfactor-page (${navigator.userAgent})`, token));
  };
  ws.onmessage = (event) => onServerMessage(event.data);
  ws.onclose = () => {
    clearInterval(state.heartbeat);
    state.ws = null;
    state.queue = []; // the server requeues whatever this connection held
    state.connection = `reconnecting in ${(state.backoff / 1000).toFixed(1)} s`;
    render();
    setTimeout(connect, state.backoff * (0.5 + Math.random()));
    state.backoff = Math.min(state.backoff * 2, 30000);
  };
}

function onServerMessage(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  switch (msg.type) {
    case 'welcome':
      state.connection = 'connected';
      state.backoff = 500;
      clearInterval(state.heartbeat);
      state.heartbeat = setInterval(() => send(heartbeat_message()), msg.heartbeat_ms);
      break;
    case 'assign':
      send(ack_message(msg.chunk_id));
      state.serverIdle = false;
      state.queue.push({ id: msg.chunk_id, count: msg.numbers.length, frame: text });
      pump();
      break;
    case 'cancel':
      for (const id of msg.chunk_ids) {
        const before = state.queue.length;
        state.queue = state.queue.filter((c) => c.id !== id);
        if (state.queue.length === before) state.cancelled.add(id);
      }
      break;
    case 'idle':
      state.serverIdle = true;
      break;
    case 'rejected':
      console.warn('result rejected', msg.reason);
      break;
    case 'error':
      state.connection = `refused: ${msg.message}`;
      break;
    default:
      break;
  }
  render();
}

function setPaused(paused) {
  state.paused = paused;
  localStorage.setItem(PAUSE_KEY, paused ? '1' : '0');
  send(capacity_message(slots()));
  if (paused && state.queue.length) {
    // Hand back what has not started; running chunks finish and are sent.
    send(release_message(state.queue.map((c) => c.id)));
    state.queue = [];
  }
  render();
}

function rate() {
  const now = performance.now();
  state.events = state.events.filter(([t]) => now - t < 10000);
  if (state.events.length === 0) return 0;
  const n = state.events.reduce((s, [, c]) => s + c, 0);
  const span = Math.max(1000, now - state.events[0][0]);
  return n / (span / 1000);
}

function render() {
  $('toggle').textContent = state.paused ? 'Resume' : 'Pause';
  $('toggle').setAttribute('aria-pressed', String(state.paused));
  $('conn').textContent = state.connection;
  $('workers').textContent = String(state.workers.length);
  $('factored').textContent = state.factored.toLocaleString('en-US');
  $('rate').textContent = `${Math.round(rate()).toLocaleString('en-US')} /s`;
  const busy = state.workers.filter((w) => w.chunk).length;
  $('state-text').textContent = state.paused
    ? 'Paused. Nothing is computed until you resume.'
    : state.serverIdle && busy === 0 ? 'Contributing — waiting for work from the server.'
    : `Contributing with ${busy} of ${state.workers.length} workers busy.`;
  const list = $('worker-list');
  while (list.children.length < state.workers.length) list.appendChild(document.createElement('li'));
  state.workers.forEach((w, i) => {
    const label = w.chunk ? 'factoring' : state.paused ? 'paused' : 'idle';
    list.children[i].textContent = `worker ${i + 1}: ${label}`;
    list.children[i].className = label;
  });
}

async function main() {
  $('origin').textContent = location.host;
  $('cores').textContent = String(threads);
  $('toggle').addEventListener('click', () => setPaused(!state.paused));
  await init();
  startWorkers();
  connect();
  setInterval(render, 1000);
  render();
}

main().catch((err) => {
  $('state-text').textContent = `Could not start: ${err}`;
});
