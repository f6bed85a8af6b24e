// A clock of the page (`clock` in app.js: its heartbeats, and the renewal of
// its turn where tabs take turns through localStorage), a Web Worker of its
// own. A hidden tab's own timers may fire only once a minute (Chromium's
// intensive wake-up throttling): past the coordinator's lease timeout (30 s
// by default), so chunks that take longer would lapse and be factored
// twice, and past the 5 s after which another tab takes an unrenewed turn.
// A dedicated worker's timers are not throttled so. The factorizer's Web
// Workers cannot keep time: a long number holds one for its whole slice.
//
// Messages in: the interval in ms (0 stops it). Messages out: one per tick.
let timer = null;

self.onmessage = (event) => {
  clearInterval(timer);
  timer = event.data > 0 ? setInterval(() => self.postMessage(null), event.data) : null;
};
