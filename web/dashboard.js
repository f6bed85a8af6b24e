// Operator dashboard: live over server-sent events (/api/events), actions
// over the JSON API with the bearer token the operator enters.
import { $, say } from './dom.js';

const fmt = (n) => Math.round(n).toLocaleString('en-US');
const TOKEN_KEY = 'crowdfactor.apiToken';
// A browser set to block site data refuses sessionStorage (using it
// throws): the token is then kept by this page only, until it is reloaded.
const session = {
  get(key) {
    try { return sessionStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try { sessionStorage.setItem(key, value); } catch { /* kept in `token` only */ }
  },
};
let token = session.get(TOKEN_KEY) || new URLSearchParams(location.search).get('token') || '';
let source = null;
const history = [];        // [time ms, numbers factored] for the chart
const jobHistory = new Map(); // job id -> [[time ms, done], ...] for rate and ETA

/** A request with the token; an error answer throws with its message. */
async function request(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': body instanceof Blob ? body.type : 'application/json' } : {}) },
    body: body instanceof Blob ? body : body ? JSON.stringify(body) : undefined,
  });
  if (!resp.ok) {
    const data = await resp.json().catch(() => ({}));
    throw new Error((data.error && data.error.message) || `${resp.status}`);
  }
  return resp;
}

async function api(method, path, body) {
  return (await request(method, path, body)).json().catch(() => ({}));
}

function duration(s) {
  if (!isFinite(s)) return '∞';
  if (s < 60) return `${Math.max(0, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** Rate of a job and an ETA interval from the spread of its per-second rates. */
function estimate(job, now) {
  const h = jobHistory.get(job.id) || [];
  h.push([now, job.done]);
  while (h.length && now - h[0][0] > 60000) h.shift();
  jobHistory.set(job.id, h);
  if (job.state !== 'running' || h.length < 3) return { rate: 0, eta: '—' };
  const rates = [];
  for (let i = 1; i < h.length; i++) rates.push((h[i][1] - h[i - 1][1]) / ((h[i][0] - h[i - 1][0]) / 1000));
  const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
  const sd = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / Math.max(1, rates.length - 1));
  const se = sd / Math.sqrt(rates.length);
  const left = job.total - job.done;
  if (mean <= 0) return { rate: 0, eta: 'stalled' };
  const lo = left / (mean + 1.96 * se);
  const hi = mean - 1.96 * se > 0 ? left / (mean - 1.96 * se) : Infinity;
  return { rate: mean, eta: `${duration(left / mean)} (${duration(lo)} – ${duration(hi)})` };
}

function drawChart() {
  const c = $('chart');
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  const pts = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i][0] - history[i - 1][0]) / 1000;
    pts.push([history[i][0], dt > 0 ? (history[i][1] - history[i - 1][1]) / dt : 0]);
  }
  if (pts.length < 2) return;
  const max = Math.max(1, ...pts.map((p) => p[1]));
  const t0 = pts[0][0];
  const span = Math.max(1, pts[pts.length - 1][0] - t0);
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#0b5cad';
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach(([t, r], i) => {
    const x = ((t - t0) / span) * (c.width - 10) + 5;
    const y = c.height - 5 - (r / max) * (c.height - 25);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = ctx.strokeStyle;
  ctx.font = '12px system-ui';
  ctx.fillText(`${fmt(max)}/s`, 8, 14);
  const secs = Math.round(span / 1000);
  ctx.textAlign = 'right';
  ctx.fillText(secs >= 90 ? `last ${Math.round(secs / 60)} min` : `last ${secs} s`, c.width - 8, 14);
  ctx.textAlign = 'left';
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

const jobRows = new Map(); // job id -> its row's elements, kept between snapshots

/** A job's row, made once: later snapshots update it in place, so a click or
 * a priority being typed is not lost to a rebuilt table every second. */
function jobRow(job) {
  const tr = document.createElement('tr');
  const [id, state, rate, eta] = [cell(job.id), cell(''), cell(''), cell('')];
  if (job.name) {
    const name = document.createElement('span');
    name.className = 'name'; name.textContent = job.name; name.title = job.name;
    id.append(' ', name);
  }
  const prog = document.createElement('td');
  prog.innerHTML = '<div class="progress"><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div></div></div><span aria-hidden="true"></span></div>';
  prog.querySelector('[role=progressbar]').setAttribute('aria-label', `Job ${job.id} progress`);
  prog.dataset.job = job.id;
  const pr = document.createElement('td');
  const input = document.createElement('input');
  input.type = 'number'; input.min = '-1000'; input.max = '1000'; input.value = String(job.priority);
  input.dataset.priority = input.value;
  input.setAttribute('aria-label', `Priority of job ${job.id}`);
  input.addEventListener('change', () => {
    // A cleared field (or one holding no number: its value is '') changes
    // nothing, where Number('') would be priority 0: the job's comes back.
    if (input.value.trim() === '') { input.value = input.dataset.priority; return; }
    api('PATCH', `api/jobs/${job.id}`, { priority: Number(input.value) }).catch((e) => {
      input.value = input.dataset.priority;
      alert(e);
    });
  });
  pr.append(input);
  const act = document.createElement('td');
  const csv = document.createElement('button');
  csv.type = 'button'; csv.textContent = 'CSV'; csv.dataset.download = job.id;
  csv.setAttribute('aria-label', `Download the results of job ${job.id} as CSV`);
  csv.addEventListener('click', () => downloadResults(job.id).catch(alert));
  const cancel = document.createElement('button');
  cancel.type = 'button'; cancel.className = 'danger'; cancel.textContent = 'Cancel'; cancel.setAttribute('aria-label', `Cancel job ${job.id}`);
  cancel.addEventListener('click', () => { if (confirm(`Cancel job ${job.id}?`)) api('DELETE', `api/jobs/${job.id}`).catch(alert); });
  const del = document.createElement('button');
  del.type = 'button'; del.className = 'danger'; del.textContent = 'Delete'; del.setAttribute('aria-label', `Delete job ${job.id} and its results`);
  del.addEventListener('click', () => {
    if (confirm(`Delete job ${job.id} and its results? This cannot be undone.`)) api('DELETE', `api/jobs/${job.id}?purge=true`).catch(alert);
  });
  act.append(csv, cancel, del);
  tr.append(id, state, prog, rate, eta, pr, act);
  return { tr, state, prog, rate, eta, input, csv, cancel, del };
}

function renderJobs(jobs, now) {
  const body = $('jobs');
  const ordered = jobs.slice().reverse();
  const seen = new Set();
  let before = body.firstChild;
  for (const job of ordered) {
    seen.add(job.id);
    let row = jobRows.get(job.id);
    if (!row) { row = jobRow(job); jobRows.set(job.id, row); }
    const pct = job.total ? Math.floor((100 * job.done) / job.total) : 0;
    const { rate, eta } = estimate(job, now);
    row.state.textContent = job.state;
    const progress = `${pct} % (${fmt(job.done)} / ${fmt(job.total)})`;
    const bar = row.prog.querySelector('[role=progressbar]');
    bar.setAttribute('aria-valuenow', String(pct));
    // The bar says it all to a screen reader (its text beside it, hidden
    // from one, would have it read the percentage twice).
    bar.setAttribute('aria-valuetext', progress);
    row.prog.querySelector('.bar > div').style.width = `${pct}%`;
    row.prog.querySelector('span').textContent = progress;
    row.rate.textContent = rate ? `${fmt(rate)}/s` : '—';
    row.eta.textContent = job.state === 'done' ? 'done' : eta;
    row.input.dataset.priority = String(job.priority);
    if (document.activeElement !== row.input) row.input.value = row.input.dataset.priority;
    row.csv.hidden = !(job.done > 0);
    const open = job.state === 'queued' || job.state === 'running';
    row.cancel.hidden = !open;
    row.del.hidden = open;
    // A finished job's priority orders nothing (the server says 409).
    row.input.disabled = !open;
    // Moved only when out of place: moving the row with the focus in it
    // would take the focus away.
    if (row.tr !== before) body.insertBefore(row.tr, before);
    before = row.tr.nextSibling;
  }
  for (const [id, row] of jobRows) {
    if (!seen.has(id)) { row.tr.remove(); jobRows.delete(id); jobHistory.delete(id); }
  }
}

/**
 * Saves a job's results (those accepted so far) as a CSV file. Fetched with
 * the token in a header, not a link with it in the URL, which the browser
 * would keep in its download list.
 */
async function downloadResults(id) {
  const resp = await request('GET', `api/jobs/${id}/results?format=csv`);
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = `crowdfactor-job-${id}.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// What a worker holds, of what it wants.
function held(w) {
  if (w.waiting) return `${w.holding} (waiting: another tab of its browser contributes)`;
  if (w.slots === 0) return `${w.holding} (paused)`;
  return `${w.holding} of ${w.slots}${w.probation ? ' (let a lease lapse)' : ''}`;
}

function renderWorkers(workers) {
  const body = $('workers');
  body.replaceChildren();
  for (const w of workers) {
    const tr = document.createElement('tr');
    tr.append(cell(String(w.id)), cell(w.kind), cell(w.name || '—'), cell(String(w.threads)), cell(`${fmt(w.rate)}/s`),
      cell(fmt(w.chunks_done)), cell(held(w)), cell(String(w.strikes)));
    body.append(tr);
  }
}

// "1 worker", "2 workers", "10,000 numbers".
const count = (n, noun) => `${n.toLocaleString()} ${noun}${n === 1 ? '' : 's'}`;

function onSnapshot(s) {
  const now = s.time_ms;
  // The first update of a feed brings the server's samples of the last
  // minutes: the chart starts full, also after a reconnect.
  if (Array.isArray(s.history)) history.splice(0, history.length, ...s.history);
  // A snapshot right after a sample would chart the noise of a few ms.
  const prev = history[history.length - 1];
  if (!prev || now - prev[0] >= 500) history.push([now, s.numbers_factored]);
  while (history.length && now - history[0][0] > 300000) history.shift();
  const last = history.length > 5 ? history[history.length - 6] : history[0];
  const rateNow = last && now > last[0] ? (s.numbers_factored - last[1]) / ((now - last[0]) / 1000) : 0;
  $('rate-now').textContent = fmt(rateNow);
  $('total').textContent = fmt(s.numbers_factored);
  $('worker-total').textContent = count(s.workers.length, 'worker');
  $('chunks').textContent = `${count(s.queued_numbers, 'number')} queued, ${count(s.leased_chunks, 'chunk')} in flight`;
  renderJobs(s.jobs, now);
  $('jobs-hidden').hidden = !s.jobs_hidden;
  $('jobs-hidden').textContent = s.jobs_hidden
    ? `${count(s.jobs_hidden, 'older finished job')} not shown: \`crowdfactor-server jobs\` lists every job.`
    : '';
  renderWorkers(s.workers);
  drawChart();
  // The live region says only whether the feed is live (it is read out on
  // every change); the time of the last update changes every second.
  say('live', 'Live.');
  $('updated').textContent = `Updated ${new Date(now).toLocaleTimeString()}`;
}

function connect() {
  if (source) source.close();
  source = new EventSource(`api/events?token=${encodeURIComponent(token)}`);
  source.onmessage = (e) => { try { onSnapshot(JSON.parse(e.data)); } catch (err) { console.error(err); } };
  source.onerror = () => { say('live', 'Connection lost; retrying…'); $('updated').textContent = ''; };
}

async function login(event) {
  if (event) event.preventDefault();
  if (event) token = $('token').value.trim();
  try {
    // Only the token is checked: no job is listed (limit=0), however many are kept.
    await api('GET', 'api/jobs?limit=0');
  } catch (err) {
    $('login-error').textContent = `That token was refused: ${err.message}`;
    return;
  }
  session.set(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  connect();
}

async function submitJob(event) {
  event.preventDefault();
  const kind = new FormData($('submit')).get('kind');
  const fields = { priority: Number($('priority').value || 0) };
  if ($('chunk-size').value.trim()) fields.chunk_size = Number($('chunk-size').value);
  if ($('job-name').value.trim()) fields.name = $('job-name').value.trim();
  let path = 'api/jobs';
  let body;
  if (kind === 'range') {
    body = { range: { start: $('range-start').value.trim(), count: Number($('range-count').value), step: $('range-step').value.trim() || '1' }, ...fields };
  } else {
    // A list goes as the text it is (the server reads whitespace- or
    // comma-separated numbers, and names the line of one that is none),
    // the other fields in the query string: a file of ten million numbers
    // is never taken apart here.
    const file = $('file').files[0];
    const text = kind === 'file' ? (file || new Blob([])) : $('list').value;
    body = new Blob([text], { type: 'text/plain' });
    path += `?${new URLSearchParams(Object.entries(fields).map(([k, v]) => [k, String(v)]))}`;
  }
  try {
    const job = await api('POST', path, body);
    $('submit-result').textContent = `Submitted job ${job.id}: ${fmt(job.total)} numbers.`;
  } catch (err) {
    $('submit-result').textContent = `Not submitted: ${err.message}`;
  }
}

$('login').addEventListener('submit', login);
$('submit').addEventListener('submit', submitJob);
for (const radio of document.querySelectorAll('input[name=kind]')) {
  radio.addEventListener('change', () => {
    for (const div of document.querySelectorAll('[data-kind]')) div.hidden = div.dataset.kind !== radio.value || !radio.checked;
  });
}
if (token) login();
