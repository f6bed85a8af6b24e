// The volunteer page's runtime: one WebSocket to the coordinator, N Web
// Workers (each with its own wasm factorizer). Every frame sent is built by
// the wasm protocol bindings. Settings live in localStorage.
import init, {
  hello_message, rename_message, ack_message, heartbeat_message, capacity_message, release_message, kept_name,
} from './pkg/crowdfactor_wasm.js';
import { $, say, setText } from './dom.js';

const cores = Math.max(1, navigator.hardwareConcurrency || 1);
// A browser set to block site data refuses localStorage (using it
// throws): the page then contributes with the defaults, and says that
// settings last only while the tab is open (the page is parsed before this
// module runs). A value that is not JSON (left by an older page, edited by
// hand) reads as the default.
const notKept = () => { $('storage-note').hidden = false; };
const stored = (key, fallback) => {
  let v;
  try {
    v = localStorage.getItem(`crowdfactor.${key}`);
  } catch {
    notKept();
    return fallback;
  }
  try {
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
};
const store = (key, value) => {
  try {
    localStorage.setItem(`crowdfactor.${key}`, JSON.stringify(value));
  } catch {
    notKept(); // refused, or full
  }
};

const settings = {
  paused: stored('paused', false),
  workers: Math.min(cores, Math.max(1, stored('workers', cores))),
  duty: stored('duty', 1),
  pauseHidden: stored('pauseHidden', false),
  pauseBattery: stored('pauseBattery', false),
  name: stored('name', ''),
};


// WebAssembly can be off (Safari's Lockdown Mode, a browser's policy or
// setting): then this tab can compute nothing, and says so (see `main`).
const hasWasm = typeof WebAssembly === 'object';
// The protocol bindings (every frame is built by them), loading from the start.
const wasmReady = hasWasm ? init() : null;

const state = {
  ws: null,
  connection: 'connecting',
  generation: 0,
  workers: [],        // { worker, chunks: [{id, count, generation, frame, runs?, posted, cancelled?}] (the first running), ready, retiring, done, depth, lastAt }
  queue: [],          // assignments received but not started: { id, count, frame, runs?, spliced? }
  sent: new Map(),     // chunk id -> { frame, result }: results sent, not yet accepted or rejected
  carried: [],        // results for an earlier connection: { frame, result, at }
  blocked: [],        // assignments waiting for numbers still factored for an earlier connection: { msg, text }
  factored: 0,
  events: [],         // [time ms, numbers] for the rate
  backoff: 500,
  retrying: false,    // a reconnect waits for its turn (the countdown in `connection`)
  loadRetry: 1000,    // ms before replacing a Web Worker that could not load
  heartbeat: null,    // the clock of heartbeats (see `clock`, `beatEvery`)
  beatMs: 0,          // the heartbeat interval the server asked for (0: none)
  unanswered: 0,      // heartbeats sent since the server last said anything
  serverIdle: false,
  onBattery: false,
  batterySupported: false,
  engine: null,       // 'wide' or 'standard', as the Web Workers report it
  refused: null,      // why the server refused this page for good (no reconnects)
  everConnected: false,
  lastError: null,    // the server's last `error` message, until the next welcome
  renderQueued: false, // a render is due within 100 ms (see `renderSoon`)
  slots: 0,           // as last told the server
  waitingSent: false, // as last told the server: 0 slots while another tab has the turn
};

/** Paused by the button, or by a condition the volunteer asked for. */
function pausedByChoice() {
  return settings.paused
    || (settings.pauseHidden && document.hidden)
    || (settings.pauseBattery && state.onBattery);
}
/** Computing nothing: paused, or another tab of this browser has the turn. */
const effectivePause = () => pausedByChoice() || !ourTurn();
/** Computing nothing only because another tab of this browser has the turn. */
const waitingTurn = () => !pausedByChoice() && !ourTurn();

/**
 * One tab of this browser contributes at a time: a volunteer who opens the
 * page twice would otherwise run twice the Web Workers chosen under "How
 * much of this machine to use", on the same cores. The turn is a Web Lock,
 * which the browser frees however the tab ends (closed, crashed, another
 * page loaded in it), or where there are none (a page served over plain
 * http by another machine: Web Locks need a secure context) a lease in
 * localStorage (`leaseLocks`). A tab that would compute asks for it and,
 * while another tab has it, stays connected with no chunks and says so;
 * a pause of this tab's own (hidden, on battery), leaving the page, being
 * frozen or refused give it up. Where neither works (site data blocked)
 * every tab contributes.
 */
const turn = {
  locks: (globalThis.isSecureContext && navigator.locks) || leaseLocks(),
  held: false,     // this tab has it
  asked: false,    // asked for, not yet given
  waiting: false,  // another tab has it; this one is in line
  give: null,      // gives it up (while held)
  withdraw: null,  // leaves the line (while waiting)
  away: false,     // the page was left or frozen (see `leave`)
};
const TURN = 'crowdfactor-contributing';

/**
 * Calls `tick` every `ms` set by `every(ms)` (0: never), clocked by
 * `web/ticker.js` in a Web Worker: this page's own timers may fire once a
 * minute while the tab is hidden (Chromium's intensive wake-up throttling),
 * the ticker's keep time. Where the ticker cannot run (it failed to load),
 * this page's timer clocks it instead, with a warning naming the clock if
 * `what` is given. `stop()` ends it for good.
 */
function clock(tick, what) {
  let ms = 0;
  let ticker = null;
  let page = null;
  let stopped = false;
  const every = (next) => {
    ms = next;
    clearInterval(page);
    page = null;
    if (stopped) return;
    if (ticker) ticker.postMessage(ms);
    else if (ms > 0) page = setInterval(tick, ms);
  };
  const byPage = (why) => {
    if (what) console.warn(`${what} clock unavailable; using the page's timer`, why);
    ticker?.terminate();
    ticker = null;
    every(ms);
  };
  try {
    ticker = new Worker(new URL('./ticker.js', import.meta.url), { type: 'module' });
    // A tick queued before the interval changed may still arrive.
    ticker.onmessage = () => tick();
    ticker.onerror = (event) => {
      event.preventDefault();
      byPage(event.message);
    };
  } catch (err) {
    byPage(err);
  }
  const stop = () => {
    every(0);
    stopped = true;
    ticker?.terminate();
    ticker = null;
  };
  return { every, stop };
}

/**
 * Web Locks' `request`, as `updateTurn` uses it, over a lease kept in
 * localStorage: the holding tab's id and when it last renewed it (every
 * second, clocked by a ticker Web Worker: a hidden tab's own timers may
 * fire once a minute). A lease not renewed for 5 s is free: its tab ended
 * without `pagehide` (crashed) or stalled; such a tab finds it taken at its
 * next renewal and gives its turn up (`onLost`). Two tabs that take a free
 * lease at once both write it; the later write stands, and the other tab,
 * reading it back a moment later, waits. Waiting tabs look again each
 * second (on the same clock, hidden or not), and at once when the lease is
 * given back. `null` without localStorage.
 */
function leaseLocks() {
  const KEY = 'crowdfactor.turn';
  const me = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}`;
  try {
    localStorage.getItem(KEY);
  } catch {
    return null;
  }
  const read = () => {
    try {
      return JSON.parse(localStorage.getItem(KEY));
    } catch {
      return null;
    }
  };
  const mine = () => read()?.tab === me;
  const free = () => {
    const lease = read();
    return !lease || lease.tab === me || !(Date.now() - lease.at < 5000);
  };
  const write = () => localStorage.setItem(KEY, JSON.stringify({ tab: me, at: Date.now() }));
  return {
    async request(name, options, callback) {
      // One clock for the whole request, waiting, taking and holding: a
      // waiting tab's own timers, hidden for a while, would look again only
      // once a minute, and a crashed holder's turn would stay idle so long.
      let onTick = null;
      const ticks = clock(() => onTick?.());
      // The next tick; or, when `early`, the lease given back or the wait
      // withdrawn, whichever comes first.
      const next = (early) => new Promise((resolve) => {
        const done = () => {
          onTick = null;
          window.removeEventListener('storage', given);
          options.signal?.removeEventListener('abort', done);
          resolve();
        };
        const given = (event) => {
          if (event.key === KEY || event.key === null) done();
        };
        onTick = done;
        if (early) {
          window.addEventListener('storage', given);
          options.signal?.addEventListener('abort', done);
        }
      });
      try {
        for (;;) {
          if (options.signal?.aborted) throw new DOMException('withdrawn', 'AbortError');
          if (free()) {
            write();
            // Long enough for another tab's write at the same moment to land.
            const until = Date.now() + 100 + 100 * Math.random();
            ticks.every(50);
            while (Date.now() < until) await next(false);
            if (mine()) break;
          }
          if (options.ifAvailable) return callback(null);
          ticks.every(1000);
          await next(true);
        }
        ticks.every(1000);
        onTick = () => {
          if (mine()) {
            try {
              write();
            } catch {
              // Full: renewed at the next tick, or lapses (and another tab takes over).
            }
          } else {
            ticks.stop();
            options.onLost?.();
          }
        };
        return await callback({ name, mode: 'exclusive' });
      } finally {
        ticks.stop();
        if (mine()) localStorage.removeItem(KEY);
      }
    },
  };
}
/** Whether this tab may compute: it has the turn, or there are no turns. */
const ourTurn = () => !turn.locks || turn.held;
/**
 * Whether this tab asks for (or keeps) the turn. The Pause button pauses
 * every tab of the browser (a shared setting), so a tab paused by it keeps
 * its turn: giving it up handed it to a tab the pause had not reached yet
 * (it reaches other tabs as a storage event, the lock by another path),
 * which took a chunk and computed it before pausing.
 */
const wantsTurn = () => (settings.paused || !pausedByChoice()) && !turn.away && !state.refused;

/** Asks for the turn when this tab would compute; gives it up when not. */
function updateTurn() {
  if (!turn.locks) return;
  if (!wantsTurn()) {
    if (turn.give) turn.give();
    if (turn.withdraw) turn.withdraw();
    return;
  }
  if (turn.held || turn.asked) return;
  turn.asked = true;
  // Held until given up: the lock is the promise's.
  const take = () => new Promise((release) => {
    Object.assign(turn, { held: true, asked: false, waiting: false, withdraw: null });
    turn.give = () => {
      Object.assign(turn, { held: false, give: null });
      release();
    };
    updatePause(); // computes now (or gives it back, if paused meanwhile)
  });
  // Refused (Chromium refuses Web Locks to a browser set to block site
  // data): no turns then, rather than a tab that never computes.
  const failed = (err) => {
    console.warn('contributing without taking turns with other tabs', err);
    turn.locks = null;
    $('turn-note').hidden = true;
    updatePause();
  };
  // (Only a lease can be lost: then this tab waits its turn again.)
  const onLost = () => {
    if (turn.give) turn.give();
    updatePause();
  };
  turn.locks.request(TURN, { ifAvailable: true, onLost }, (lock) => {
    if (lock) return take();
    turn.asked = false;
    if (!wantsTurn()) return undefined;
    const line = new AbortController();
    Object.assign(turn, { asked: true, waiting: true });
    turn.withdraw = () => {
      Object.assign(turn, { asked: false, waiting: false, withdraw: null });
      line.abort();
    };
    turn.locks.request(TURN, { signal: line.signal, onLost }, take).catch((err) => {
      if (err.name !== 'AbortError') failed(err);
    });
    render();
    return undefined;
  }).catch(failed);
}
/**
 * The chunks this tab wants to hold when it is not paused: two for each
 * chunk a Web Worker is given at a time (see `depthFor`), so that one
 * waits here for each.
 */
function wanted() {
  const depths = state.workers.filter((w) => !w.retiring).reduce((sum, w) => sum + w.depth, 0);
  return 2 * Math.max(settings.workers, depths);
}
/** The chunks this tab asks the server for. */
const slots = () => (effectivePause() ? 0 : wanted());
/**
 * Tells the server how many chunks this tab wants, and whether it waits for
 * another tab's turn rather than pauses, when that changed (on a connection:
 * `hello` says the chunks first).
 */
function announce() {
  const n = slots();
  const waiting = waitingTurn();
  if ((n !== state.slots || waiting !== state.waitingSent) && connected()) {
    state.slots = n;
    state.waitingSent = waiting;
    send(capacity_message(n, waiting));
  }
}
/** Every chunk the Web Workers hold: running, or queued in one behind its running chunk. */
const held = () => state.workers.flatMap((w) => w.chunks);

/**
 * Whether the socket is open: frames go out only then (and only then are
 * the bindings that build them sure to be loaded).
 */
const connected = () => state.ws?.readyState === WebSocket.OPEN;

function send(frame) {
  if (connected()) state.ws.send(frame);
}

function spawnWorker() {
  const w = { worker: new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }), chunks: [], ready: false, retiring: false, done: 0, depth: 1, lastAt: 0 };
  w.worker.onmessage = (event) => onWorkerMessage(w, event.data);
  w.worker.onerror = (event) => {
    console.error('worker failed', event.message);
    if (!w.ready) replace(w); // its script did not load
  };
  w.worker.postMessage({ type: 'duty', value: settings.duty });
  state.workers.push(w);
}

function retire(w) {
  w.worker.terminate();
  state.workers = state.workers.filter((x) => x !== w);
}

/**
 * A Web Worker that could not load its code (the server went away while
 * the page loaded, a download broke off) would never compute: it is
 * replaced, later and later while loading keeps failing.
 */
function replace(w) {
  if (!state.workers.includes(w)) return; // both its error event and message
  retire(w);
  setTimeout(applyWorkerCount, state.loadRetry);
  state.loadRetry = Math.min(state.loadRetry * 2, 60000);
}

/** Grows or shrinks the pool; busy workers finish their chunk first. */
function applyWorkerCount() {
  const active = state.workers.filter((w) => !w.retiring);
  for (let i = active.length; i < settings.workers; i++) spawnWorker();
  for (const w of active.slice(settings.workers)) {
    w.retiring = true;
    if (w.chunks.length === 0) retire(w);
  }
  announce();
  pump();
}

function onWorkerMessage(w, msg) {
  if (msg.type === 'ready') {
    w.ready = true;
    state.engine = msg.engine;
    state.loadRetry = 1000;
    pump();
    render();
    return;
  }
  if (msg.type === 'error' && !w.ready) {
    console.error('factorizer could not load', msg.message);
    replace(w);
    return;
  }
  // A Web Worker answers its chunks in the order it was given them, but
  // drops a cancelled one wherever it is.
  const at = w.chunks.findIndex((c) => c.id === msg.id);
  const chunk = at >= 0 ? w.chunks.splice(at, 1)[0] : null;
  if (msg.type === 'result' && chunk) {
    const now = performance.now();
    w.depth = depthFor(now - Math.max(w.lastAt, chunk.posted));
    w.lastAt = now;
  }
  // A chunk cancelled by the server (its job cancelled, another worker
  // answered it first) or handed back on a pause, but finished before its
  // Web Worker heard: nobody wants its result, and it does not count.
  if (msg.type === 'result' && chunk && !chunk.cancelled) {
    w.done += 1;
    state.factored += chunk.count;
    allTime.add(chunk.count);
    state.events.push([performance.now(), chunk.count]);
    const result = chunk.spliced ? splice(chunk.id, chunk.spliced, msg.frame) : msg.frame;
    const answer = { id: chunk.id, frame: assignment(chunk), result };
    if (chunk.generation === state.generation) {
      sendResult(answer);
    } else {
      keep(answer);
    }
  } else if (msg.type === 'error') {
    console.error('factorizer error', msg.message);
    if (chunk) send(release_message([chunk.id]));
  }
  if (w.retiring && w.chunks.length === 0) retire(w);
  announce();
  if (chunk && chunk.generation !== state.generation) unblock();
  pump();
  renderSoon();
}

/**
 * Sends a chunk's result and keeps it until the server accepts or rejects
 * it: a connection found dead (three unanswered heartbeats) may have taken
 * it nowhere.
 */
function sendResult(answer) {
  if (!connected()) {
    keep(answer); // between connections
    return;
  }
  send(answer.result);
  state.sent.delete(answer.id);
  state.sent.set(answer.id, answer);
  if (state.sent.size > 256) state.sent.delete(state.sent.keys().next().value);
}

/**
 * Keeps the result of a chunk computed for a connection that has ended,
 * or sent on it and not answered: the coordinator queues that connection's
 * chunks again under their ids, first in line, so this tab, reconnecting,
 * is likely to be given it again (see `assign`). A few (frames of list
 * chunks take megabytes), for ten minutes at most.
 */
function keep(answer) {
  const now = performance.now();
  // Two connections' worth: a chunk computing and one answered per slot.
  const most = 2 * wanted();
  state.carried = state.carried.filter((c) => now - c.at < 600000).slice(-(most - 1));
  state.carried.push({ ...answer, at: now });
}

/**
 * A chunk leased again that this tab factored, or is factoring, for an
 * earlier connection (the same assignment, word for word: id, job and
 * numbers) is answered by that computation instead of a second one; so is
 * one whose result this connection sent and the server could not store
 * (it queued the chunk again).
 */
function answerFromEarlier(id, text) {
  const sent = state.sent.get(id);
  if (sent && sent.frame === text) {
    sendResult(sent);
    return true;
  }
  const kept = state.carried.findIndex((c) => c.frame === text);
  if (kept >= 0) {
    const [c] = state.carried.splice(kept, 1);
    sendResult(c);
    return true;
  }
  const running = held().find((c) => !c.cancelled && c.generation !== state.generation
    && assignment(c) === text);
  if (running) running.generation = state.generation;
  return Boolean(running);
}

/**
 * The `assign` frame a running chunk answers: the server's, also when its
 * Web Worker was given only the numbers no kept list held.
 */
function assignment(chunk) {
  return chunk.spliced ? chunk.spliced.frame : chunk.frame;
}

/** A number's decimal form, as every frame gives it. */
function numbersOf(numbers) {
  if (Array.isArray(numbers)) return numbers.map(String);
  const start = BigInt(numbers.start);
  const step = BigInt(numbers.step);
  const out = new Array(numbers.count);
  for (let i = 0; i < numbers.count; i += 1) out[i] = (start + BigInt(i) * step).toString();
  return out;
}

/**
 * An assignment frame's job and numbers, each index by number (cached on
 * `holder`): of a chunk a Web Worker factors in runs, only the runs'.
 */
function parsed(holder, frame) {
  if (!holder.parsed) {
    const msg = JSON.parse(frame);
    const index = new Map();
    const numbers = numbersOf(msg.numbers);
    const runs = holder.runs || [0, numbers.length];
    for (let r = 0; r < runs.length; r += 2) {
      for (let i = runs[r]; i < runs[r] + runs[r + 1]; i += 1) {
        if (!index.has(numbers[i])) index.set(numbers[i], i);
      }
    }
    holder.parsed = { job: msg.job_id, index };
  }
  return holder.parsed;
}

// After this many chunks of a job in a row that no kept result answered,
// the results kept for it are searched no more (see the native worker's
// `MISSES`): their numbers went elsewhere, or the server had stored them.
const MISSES = 16;

/**
 * A restarted server does not know the chunks it had leased: it cuts
 * their numbers into new chunks, with new ids and bounds. The lists this
 * tab factored for them (kept, see `keep`) answer those, number by
 * number; only the rest go to a Web Worker. Returns `null` (nothing to
 * take), 'wait' (some numbers are still being factored for an earlier
 * connection), or the chunk's numbers with the lists found (holes elsewhere).
 */
function reusable(msg) {
  const sources = state.carried.filter((c) => (c.missed || 0) < MISSES
    && parsed(c, c.frame).job === msg.job_id);
  // (What its Web Worker factors: of a chunk answered in part, the rest.)
  const running = held().filter((c) => !c.cancelled && c.generation !== state.generation
    && parsed(c, c.frame).job === msg.job_id);
  if (sources.length === 0 && running.length === 0) return null;
  const numbers = numbersOf(msg.numbers);
  // Filled, not sparse: `map` skips the holes of a sparse array.
  const lists = new Array(numbers.length).fill(undefined);
  let found = 0;
  let us = 0; // the found lists' share of the time they took
  let wait = false;
  numbers.forEach((n, i) => {
    for (const c of sources) {
      const j = c.parsed.index.get(n);
      if (j !== undefined) {
        if (!c.lists) {
          const result = JSON.parse(c.result);
          c.lists = result.factors.split(';');
          c.us = (result.compute_us || 0) / c.lists.length;
        }
        lists[i] = c.lists[j];
        found += 1;
        us += c.us;
        return;
      }
    }
    if (running.some((c) => c.parsed.index.has(n))) wait = true;
  });
  if (wait) return 'wait';
  for (const c of sources) c.missed = found ? 0 : (c.missed || 0) + 1;
  return found ? { numbers, lists, us } : null;
}

/**
 * Answers an assignment from kept lists where it can: whole (sent at once)
 * or in part (the Web Worker gets the other numbers; `splice` puts the
 * result together). Returns whether it took the assignment.
 */
function answerInPart(msg, text) {
  const reuse = reusable(msg);
  if (reuse === 'wait') {
    state.blocked.push({ msg, text });
    return true;
  }
  if (!reuse) return false;
  const rest = reuse.numbers.filter((_, i) => reuse.lists[i] === undefined);
  const spliced = { frame: text, lists: reuse.lists, us: reuse.us };
  if (rest.length === 0) {
    sendResult({ id: msg.chunk_id, frame: text, result: splice(msg.chunk_id, spliced, null) });
    return true;
  }
  // The Web Worker gets the chunk with the runs of numbers no kept list
  // holds, (index, count) pairs: it sieves a range's runs as ranges.
  state.queue.push({ id: msg.chunk_id, count: rest.length, frame: text, runs: holes(reuse.lists), spliced });
  pump();
  return true;
}

/** The runs of `lists` without a list, as (index, count) pairs, flat. */
function holes(lists) {
  const runs = [];
  lists.forEach((l, i) => {
    if (l !== undefined) return;
    const last = runs.length - 2;
    if (last >= 0 && runs[last] + runs[last + 1] === i) runs[last + 1] += 1;
    else runs.push(i, 1);
  });
  return runs;
}

/** The result frame of a chunk: the kept lists, the Web Worker's in the holes. */
function splice(id, spliced, workerFrame) {
  const worker = workerFrame ? JSON.parse(workerFrame) : { factors: '', compute_us: 0 };
  const fresh = workerFrame ? worker.factors.split(';') : [];
  let k = 0;
  const lists = spliced.lists.map((l) => (l === undefined ? fresh[k++] : l));
  const us = Math.round((worker.compute_us || 0) + spliced.us);
  return JSON.stringify({ type: 'result', chunk_id: id, factors: lists.join(';'), compute_us: us });
}

/** Assignments that waited for an earlier connection's chunks look again. */
function unblock() {
  const blocked = state.blocked;
  state.blocked = [];
  for (const { msg, text } of blocked) answerInPart(msg, text) || queueChunk(msg, text);
}

/** Queues an assignment for the Web Workers. */
function queueChunk(msg, text) {
  // numbers: a list of decimal strings, or a range {start, step, count}.
  const count = Array.isArray(msg.numbers) ? msg.numbers.length : msg.numbers.count;
  state.queue.push({ id: msg.chunk_id, count, frame: text });
  pump();
}

/** Whether chunk `id` waits here or runs in a Web Worker (not cancelled). */
function holds(id) {
  return state.blocked.some((b) => b.msg.chunk_id === id)
    || state.queue.some((c) => c.id === id)
    || held().some((c) => c.id === id && !c.cancelled && c.generation === state.generation);
}

/**
 * How many chunks a Web Worker is given at a time, the first to run and
 * the rest queued in it, by how long its last one took (ms, from when it
 * could start it until its result came): it starts the next as soon as it
 * posts a result. A result's way to this page and the next chunk's way
 * back take 0.3–1 ms in Chromium (its messages pass through the page's
 * main thread and the browser's network process): chunks of a few dozen
 * small numbers (an owner's `chunk_size` cap) take 0.1 ms, and one at a
 * time, Web Workers spent four fifths of their time waiting. Chunks of 0.1
 * s and more go one at a time, so that at a job's end none waits behind
 * another in a busy Web Worker while one is idle.
 */
function depthFor(ms) {
  if (ms >= 100) return 1;
  if (ms >= 20) return 2;
  return ms >= 5 ? 4 : 8;
}

function pump() {
  if (effectivePause()) return;
  for (let depth = 1; depth <= 8; depth += 1) {
    for (const w of state.workers) {
      if (state.queue.length === 0) return;
      if (w.chunks.length >= depth || depth > w.depth || !w.ready || w.retiring) continue;
      const next = state.queue.shift();
      w.chunks.push({
        id: next.id, count: next.count, generation: state.generation, frame: next.frame,
        runs: next.runs, spliced: next.spliced, posted: performance.now(),
      });
      w.worker.postMessage({ type: 'chunk', id: next.id, frame: next.frame, runs: next.runs });
    }
  }
}

function connect() {
  // A reconnect timer and a return from the back/forward cache may both
  // call this: one socket at a time.
  if (state.ws) return;
  // Beside the page, not at the root: the page may be served under a path
  // (a proxy's /crowdfactor/).
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  const ws = new WebSocket(url.href);
  state.ws = ws;
  state.connection = 'connecting';
  state.retrying = false;
  state.generation += 1;
  render();
  ws.onopen = () => {
    const token = new URLSearchParams(location.search).get('token') || undefined;
    state.slots = slots();
    state.waitingSent = false;
    ws.send(hello_message(state.slots, settings.workers, `crowdfactor-page (${navigator.userAgent})`, token,
      settings.name));
    announce(); // a tab waiting its turn says so
  };
  ws.onmessage = (event) => onServerMessage(event.data);
  ws.onclose = () => {
    dropSocket();
    if (state.refused) {
      // Reconnecting cannot help until the volunteer changes the URL.
      state.connection = 'refused';
      render();
      return;
    }
    reconnectLater('reconnecting');
  };
}

function reconnectLater(why) {
  state.connection = `${why} in ${(state.backoff / 1000).toFixed(1)} s`;
  state.retrying = true;
  render();
  setTimeout(connect, state.backoff * (0.5 + Math.random()));
  state.backoff = Math.min(state.backoff * 2, 30000);
}

/**
 * Forgets the socket; the server requeues whatever it held. Results it
 * never answered are kept for the next connection.
 */
function dropSocket() {
  beatEvery(0);
  state.ws = null;
  state.queue = [];
  state.blocked = [];
  for (const answer of state.sent.values()) keep(answer);
  state.sent.clear();
}

/**
 * Leaving the page (another URL in this tab, closing it): close the socket
 * now, so the server hands this tab's chunks to others at once. A page kept
 * in the back/forward cache is frozen with its socket open otherwise, and
 * its chunks wait for the lease to lapse. Coming back reconnects.
 */
function leave() {
  allTime.save();
  turn.away = true;
  updateTurn();
  if (abandon('leaving the page')) state.connection = 'left the page';
}

/**
 * Connects at once (back from the back/forward cache, resumed after a
 * freeze, back online), unless the server refused this page for good.
 */
function rejoin() {
  if (state.refused) return;
  turn.away = false;
  updateTurn();
  state.backoff = 500;
  connect();
}

/** Closes the socket without waiting for it to say it closed. */
function abandon(why) {
  const ws = state.ws;
  if (!ws) return false;
  ws.onclose = null;
  ws.onmessage = null;
  dropSocket();
  ws.close(1000, why);
  return true;
}

/** Heartbeats every `ms` (0: none), on the page's heartbeat clock. */
function beatEvery(ms) {
  state.beatMs = ms;
  state.heartbeat?.every(ms);
}

/**
 * Every heartbeat tick. The server answers each heartbeat, so three
 * without any frame back mean it is gone without closing the socket (its
 * machine lost power, this laptop changed networks): TCP would take some 15
 * minutes to notice, this tab's chunks idle meanwhile. Counted in beats,
 * not time: a hidden tab's timers may fire only once a minute.
 */
function beat() {
  if (!state.ws || state.beatMs <= 0) return;
  if (state.unanswered >= 3) {
    // A close handshake on a dead connection would wait a minute.
    abandon('no answer to heartbeats');
    reconnectLater('no answer from the server; reconnecting');
    return;
  }
  state.unanswered += 1;
  send(heartbeat_message());
}

function onServerMessage(text) {
  state.unanswered = 0;
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  switch (msg.type) {
    case 'welcome':
      state.connection = 'connected';
      state.everConnected = true;
      state.lastError = null;
      state.backoff = 500;
      beatEvery(msg.heartbeat_ms);
      break;
    case 'assign':
      send(ack_message(msg.chunk_id));
      state.serverIdle = false;
      // Leased again while this tab holds it (the lease lapsed while the
      // machine slept, say): the one computation serves the new lease.
      if (holds(msg.chunk_id) || answerFromEarlier(msg.chunk_id, text)) break;
      if (effectivePause()) {
        send(release_message([msg.chunk_id])); // raced with a pause: hand it back
      } else if (!answerInPart(msg, text)) {
        queueChunk(msg, text);
      }
      break;
    case 'cancel':
      for (const id of msg.chunk_ids) {
        state.queue = state.queue.filter((c) => c.id !== id);
        state.blocked = state.blocked.filter((b) => b.msg.chunk_id !== id);
        for (const w of state.workers) {
          for (const c of w.chunks) {
            if (c.id === id && !c.cancelled) {
              c.cancelled = true;
              w.worker.postMessage({ type: 'cancel', id });
            }
          }
        }
      }
      break;
    case 'idle':
      state.serverIdle = true;
      break;
    case 'accepted':
      state.sent.delete(msg.chunk_id);
      break;
    case 'rejected':
      state.sent.delete(msg.chunk_id);
      console.warn('result rejected', msg.reason);
      break;
    case 'error':
      state.connection = `refused: ${msg.message}`;
      state.lastError = msg.message;
      if (msg.code === 'unauthorized') {
        state.refused = msg.message;
        updateTurn(); // another tab (with the right link) may contribute
      } else if (msg.code === 'bad_handshake') {
        // The server was upgraded under this tab: load the page that speaks
        // its protocol (at most once a minute, in case that does not help).
        // Without sessionStorage (site data blocked) there is no way to
        // tell a second reload from the first: no reload, rather than a loop.
        try {
          const last = Number(sessionStorage.getItem('crowdfactor-reloaded') || 0);
          if (Date.now() - last > 60000) {
            sessionStorage.setItem('crowdfactor-reloaded', String(Date.now()));
            location.reload();
          }
        } catch {
          console.warn('the server speaks a newer protocol: reload this page');
        }
      }
      break;
    default:
      break;
  }
  // The connection's state shows at once; the figures a chunk moves follow.
  if (msg.type === 'welcome' || msg.type === 'error') render();
  else renderSoon();
}

/** Re-evaluates pausing after any setting or condition changes. */
function updatePause() {
  updateTurn();
  announce();
  if (effectivePause()) {
    // Hand back what has not started, here or queued in a Web Worker;
    // running chunks finish and are sent.
    const back = state.queue.map((c) => c.id);
    state.queue = [];
    for (const w of state.workers) {
      for (const c of w.chunks.slice(1)) {
        if (c.cancelled) continue;
        c.cancelled = true;
        w.worker.postMessage({ type: 'cancel', id: c.id });
        if (c.generation === state.generation) back.push(c.id);
      }
    }
    if (back.length) send(release_message(back));
  }
  pump();
  render();
}

function rate() {
  const now = performance.now();
  state.events = state.events.filter(([t]) => now - t < 10000);
  if (state.events.length === 0) return 0;
  const n = state.events.reduce((s, [, c]) => s + c, 0);
  return n / (Math.max(1000, now - state.events[0][0]) / 1000);
}

function pauseReason() {
  if (settings.paused) return 'Paused. Nothing is computed until you resume.';
  if (settings.pauseHidden && document.hidden) return 'Paused while this tab is hidden.';
  return 'Paused while on battery.';
}

const WAITING = 'Waiting: another tab of this browser contributes to this server. '
  + 'This one takes over when that one is closed or paused.';

/**
 * The status line while the tab has no connection to the server. It is a
 * live region, read out on every change: it says the same while the tab
 * tries again and again (the countdown is in the Connection figure).
 */
function connectionText() {
  const lead = state.everConnected ? 'Not contributing right now' : 'Not contributing yet';
  const why = state.lastError
    ? `the server closed the connection (it said: ${state.lastError})`
    : state.everConnected ? 'lost the connection to the server' : 'cannot reach the server';
  if (!state.retrying && state.connection !== 'connecting') return `${lead}: ${why}; ${state.connection}.`;
  const failed = state.everConnected || state.lastError || state.backoff > 500;
  return failed ? `${lead}: ${why}; trying again…` : 'Connecting to the server…';
}

/**
 * A render within a tenth of a second, however many chunks come and go
 * meanwhile: small chunks (a job's `chunk_size` cap) bring hundreds of
 * messages a second, and a render for each kept the page's thread from
 * handing chunks on (200-number chunks in headless Chromium on 2 cores:
 * 68,000 numbers a second, 200,000 with renders coalesced).
 */
function renderSoon() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  setTimeout(() => {
    state.renderQueued = false;
    render();
  }, 100);
}

function render() {
  const paused = effectivePause();
  // The label says what pressing does; a pressed state beside a label that
  // changes would be read as "Resume, pressed".
  setText($('toggle'), settings.paused ? 'Resume' : 'Pause');
  $('toggle').classList.toggle('paused', settings.paused);
  setText($('conn'), state.connection);
  setText($('workers'), String(state.workers.filter((w) => !w.retiring).length));
  setText($('factored'), state.factored.toLocaleString('en-US'));
  allTime.show();
  setText($('rate'), `${Math.round(rate()).toLocaleString('en-US')} /s`);
  if (state.engine) {
    setText($('engine'), state.engine === 'wide'
      ? 'WebAssembly with wide arithmetic' : 'WebAssembly');
  }
  const busy = state.workers.filter((w) => w.chunks.length).length;
  // The tab strip shows a paused tab as such (first: titles are cut short),
  // also one paused while hidden or on battery.
  const waiting = waitingTurn();
  const title = waiting ? 'Waiting — crowdfactor'
    : paused ? 'Paused — crowdfactor' : 'crowdfactor — lend this tab\'s CPU to factor integers';
  if (document.title !== title) document.title = title;
  say('state-text', state.refused
    ? `Not contributing: the server refused this tab: ${state.refused}. `
      + 'Open the link its operator gives volunteers (it ends in ?token=…).'
    : pausedByChoice() ? pauseReason()
    : state.connection !== 'connected' ? connectionText()
    : waiting ? (turn.waiting ? WAITING : 'Starting…')
    : state.serverIdle && busy === 0 ? 'Contributing — waiting for work from the server.'
    // Not how many are busy: that changes between chunks, several times a
    // second, and this line is read out on every change (the worker list
    // below shows each one).
    : 'Contributing — factoring numbers for the project.');
  const list = $('worker-list');
  while (list.children.length > state.workers.length) list.lastChild.remove();
  while (list.children.length < state.workers.length) list.appendChild(document.createElement('li'));
  state.workers.forEach((w, i) => {
    const label = w.chunks.length ? (w.retiring ? 'finishing' : 'factoring')
      : waiting ? 'waiting' : paused ? 'paused' : 'idle';
    setText(list.children[i], `worker ${i + 1}: ${label} · ${w.done} chunk${w.done === 1 ? '' : 's'} done`);
    if (list.children[i].className !== label) list.children[i].className = label;
  });
}

async function refreshProject() {
  try {
    const s = await (await fetch('api/status', { cache: 'no-store' })).json();
    const pct = s.numbers_total ? Math.floor((100 * s.numbers_done) / s.numbers_total) : 100;
    // "1 active job", "2 worker connections".
    const count = (n, noun) => `${n.toLocaleString('en-US')} ${noun}${n === 1 ? '' : 's'}`;
    setText($('project'), s.jobs_active
      ? `${s.numbers_done.toLocaleString('en-US')} of ${count(s.numbers_total, 'number')} done in ${count(s.jobs_active, 'active job')}; ${count(s.workers, 'worker connection')}.`
      : `No active jobs right now; ${count(s.workers, 'worker connection')}. This tab waits for work.`);
    $('project-fill').style.width = `${pct}%`;
    $('project-bar').setAttribute('aria-valuenow', String(pct));
  } catch {
    setText($('project'), 'Project status unavailable.');
  }
}

/**
 * Applies a setting, from this tab's controls or from another tab's (they
 * are the browser's: see the `storage` listener in `setupControls`).
 */
const apply = {
  workers(v) {
    settings.workers = Math.min(cores, Math.max(1, Number(v) || cores));
    $('worker-count').value = String(settings.workers);
    applyWorkerCount();
    render();
  },
  duty(v) {
    settings.duty = Number(v) || 1;
    $('duty').value = String(settings.duty);
    for (const w of state.workers) w.worker.postMessage({ type: 'duty', value: settings.duty });
  },
  pauseHidden(v) {
    settings.pauseHidden = Boolean(v);
    $('pause-hidden').checked = settings.pauseHidden;
    updatePause();
  },
  pauseBattery(v) {
    settings.pauseBattery = Boolean(v);
    $('pause-battery').checked = settings.pauseBattery;
    updatePause();
  },
  paused(v) {
    settings.paused = Boolean(v);
    updatePause();
  },
  // Kept as the coordinator keeps it (`kept_name`) by the tab that stored it.
  name(v) {
    if (typeof v !== 'string' || v === settings.name) return;
    settings.name = v;
    $('volunteer-name').value = v;
    // On an open connection the server is told at once and the tab keeps
    // its chunks; otherwise the next `hello` carries the name.
    if (connected()) send(rename_message(v));
  },
};

function setupControls() {
  const count = $('worker-count');
  for (let i = 1; i <= cores; i++) count.add(new Option(String(i), String(i)));
  count.value = String(settings.workers);
  count.addEventListener('change', () => {
    apply.workers(count.value);
    store('workers', settings.workers);
  });
  const duty = $('duty');
  duty.value = String(settings.duty);
  duty.addEventListener('change', () => {
    apply.duty(duty.value);
    store('duty', settings.duty);
  });
  const hidden = $('pause-hidden');
  hidden.checked = settings.pauseHidden;
  hidden.addEventListener('change', () => { apply.pauseHidden(hidden.checked); store('pauseHidden', settings.pauseHidden); });
  document.addEventListener('visibilitychange', updatePause);
  const battery = $('pause-battery');
  battery.checked = settings.pauseBattery;
  battery.addEventListener('change', () => { apply.pauseBattery(battery.checked); store('pauseBattery', settings.pauseBattery); });
  if (navigator.getBattery) {
    navigator.getBattery().then((b) => {
      state.batterySupported = true;
      const update = () => { state.onBattery = !b.charging; updatePause(); };
      b.addEventListener('chargingchange', update);
      update();
    }).catch(() => {});
  } else {
    $('battery-note').textContent = '(this browser does not report battery state)';
  }
  const name = $('volunteer-name');
  name.value = settings.name;
  name.addEventListener('change', async () => {
    await wasmReady;
    const cleaned = kept_name(name.value);
    name.value = cleaned;
    if (cleaned === settings.name) return;
    apply.name(cleaned);
    store('name', cleaned);
  });
  $('toggle').addEventListener('click', () => {
    apply.paused(!settings.paused);
    store('paused', settings.paused);
  });
  // The settings are the browser's, not the tab's: one changed in another
  // tab (which stored it) applies here too. Pausing there pauses here, so
  // this tab does not take over the turn that one gave up.
  window.addEventListener('storage', (event) => {
    const key = event.key && event.key.startsWith('crowdfactor.') && event.key.slice(12);
    if (key && Object.hasOwn(apply, key) && event.newValue !== null) {
      apply[key](stored(key, settings[key]));
    }
  });
}

/**
 * How many numbers this browser has factored, all its tabs and page loads
 * together. Kept in IndexedDB, whose read-write transactions are atomic
 * across tabs: two tabs adding to one localStorage count would lose each
 * other's updates. Stored at most once a second, not once a chunk: with
 * small chunks a transaction per result was hundreds a second, and the
 * tab's renderer kept about 2.5 KB of each (200-number chunks:
 * 340 → 560 MB in three minutes, still growing; now flat near 280 MB, and
 * 290,000 numbers a second instead of 200,000). Leaving the page stores
 * what is unsaved; a tab killed within a second of a result loses it.
 */
const allTime = {
  db: null,
  value: null,  // as last stored (other tabs' counts included); null until read
  unsaved: 0,   // counted by this tab since, not yet stored
  busy: false,  // a transaction is under way
  timer: null,  // the next save is due
  open() {
    return new Promise((resolve) => {
      let req;
      try {
        req = indexedDB.open('crowdfactor', 1);
      } catch {
        resolve();
        return;
      }
      req.onupgradeneeded = () => req.result.createObjectStore('counts');
      req.onsuccess = () => {
        this.db = req.result;
        this.save();
        resolve();
      };
      req.onerror = () => resolve();
      // Never hold up contributing for the count.
      setTimeout(resolve, 2000);
    });
  },
  // Shown by the next render, not here: this runs once a chunk.
  add(n) {
    this.unsaved += n;
    this.later();
  },
  later() {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.save();
    }, 1000);
  },
  save() {
    if (!this.db || this.busy) return;
    const n = this.unsaved;
    let tx;
    try {
      tx = this.db.transaction('counts', 'readwrite');
    } catch {
      return; // the browser closed the database under the page: counted here only
    }
    this.busy = true;
    let total;
    const counts = tx.objectStore('counts');
    const get = counts.get('factored');
    get.onsuccess = () => {
      total = (get.result || 0) + n;
      counts.put(total, 'factored');
    };
    tx.oncomplete = () => {
      this.busy = false;
      this.unsaved -= n;
      this.value = total;
      this.show();
      if (this.unsaved) this.later();
    };
    // The numbers stay unsaved; the next save takes them.
    tx.onabort = () => {
      this.busy = false;
      this.later();
    };
  },
  show() {
    setText($('factored-total'), this.value === null ? '—' : (this.value + this.unsaved).toLocaleString('en-US'));
  },
};

async function main() {
  $('origin').textContent = location.host;
  $('cores').textContent = String(cores);
  if (!hasWasm) {
    // As with JavaScript off: say why, hide what would do nothing, and
    // take no chunks.
    document.body.classList.add('no-wasm');
    $('no-wasm').hidden = false;
    return;
  }
  // (Every tab contributes where there are no turns.)
  $('turn-note').hidden = !turn.locks;
  setupControls();
  await wasmReady;
  // A link can name the tab (?name=, as for a lab's machines): kept, as if
  // typed, and shown as the coordinator will keep it.
  const linked = new URLSearchParams(location.search).get('name');
  if (linked !== null) {
    settings.name = kept_name(linked);
    store('name', settings.name);
    $('volunteer-name').value = settings.name;
  }
  await allTime.open();
  for (let i = 0; i < settings.workers; i++) spawnWorker();
  state.heartbeat = clock(beat, 'heartbeat');
  updateTurn();
  connect();
  window.addEventListener('pagehide', leave);
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) rejoin();
  });
  // Frozen by the browser (Chromium freezes hidden tabs to save energy,
  // their Web Workers with them): what the tab holds would wait for the
  // lease timeout, so hand it back now, as on leaving, and connect again
  // on resuming. The Web Workers carry on where they stopped, so chunks
  // leased to the tab again are answered by that computation.
  document.addEventListener('freeze', leave);
  document.addEventListener('resume', rejoin);
  // Back on a network (after an outage, on another one): try at once
  // rather than at the end of a backoff of up to 30 s.
  window.addEventListener('online', rejoin);
  setInterval(render, 1000);
  setInterval(refreshProject, 2000);
  refreshProject();
  render();
}

main().catch((err) => {
  $('state-text').textContent = `Could not start: ${err}`;
});
