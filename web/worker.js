// One Web Worker: its own instance of the wasm factorizer. It receives an
// `assign` frame (as text) from the page and answers with the `result` frame.
import init, { factor_chunk } from './pkg/crowdfactor_wasm.js';

const ready = init();

self.onmessage = async (event) => {
  const { id, frame } = event.data;
  try {
    await ready;
    self.postMessage({ type: 'result', id, frame: factor_chunk(frame) });
  } catch (err) {
    self.postMessage({ type: 'error', id, message: String(err && err.message || err) });
  }
};

ready.then(() => self.postMessage({ type: 'ready' }),
           (err) => self.postMessage({ type: 'error', id: null, message: String(err) }));
