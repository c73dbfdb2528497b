// The page: loads the wasm and MNIST, opens WebGPU, and drives runs one awaited log point at a time
// (the browser gets its event loop back between them). Every failure is one line in #error.
//
// ?test=1 runs what CI checks (web/test/browser_test.py) and leaves the results in window.wgtrainTest:
// every op against the CPU, gradcheck of the study's 8 models, then `steps` steps of `model` on WebGPU
// and on the CPU; ?model=, ?steps=, ?batch=, ?kernels=, ?ops=0, ?gradcheck=0 and ?train=0 change it
// (with ops and gradcheck off, timings.first_step_ms is the page's load-to-first-step time).
import init, { Data, Gpu, Run, builtin_models, builtin_model_text } from './pkg/wgtrain_web.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STUDY = ['fc8', 'fc8-bn', 'cnn3', 'cnn3-bn', 'cnn5', 'cnn5-bn', 'cnn7', 'cnn7-bn'];
const COLOURS = { gpu: '#1f62c4', cpu: '#e07b00' };

let data = null;
let gpu = null;
/** The adapter as the browser names it (wgpu's name for it may be empty: browsers hide it). */
let adapterLabel = '';
/** Why there is no GPU, when there is none: it stays on the page. */
let gpuError = '';
const GPU_BUTTONS = ['train-gpu', 'gradcheck', 'opcheck'];
let lastRun = null;
let busy = false;
const curves = {};
const timings = { start: performance.now() };

/** One line, whatever was thrown (a JsError, a wasm trap, a fetch failure). */
function oneLine(e) {
  const msg = (e && e.message) ? e.message : String(e);
  return msg.split(/\s+/).join(' ').trim();
}
function showError(e) {
  const line = oneLine(e);
  $('error').textContent = line;
  if (window.wgtrainTest) window.wgtrainTest.errors.push(line);
}
function status(s) { $('status').textContent = s; }
window.addEventListener('error', (ev) => showError(ev.error || ev.message));
window.addEventListener('unhandledrejection', (ev) => showError(ev.reason));

/** Gives the browser a turn: paints, input. */
const yieldToBrowser = () => new Promise((r) => setTimeout(r, 0));

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`fetching ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function loadData() {
  const dir = '../data/mnist/';
  const files = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];
  const t0 = performance.now();
  const bytes = await Promise.all(files.map((f) => fetchBytes(dir + f)));
  const t1 = performance.now();
  data = Data.from_idx(bytes[0], bytes[1], bytes[2], bytes[3], 5000);
  timings.fetch_ms = t1 - t0;
  timings.decode_ms = performance.now() - t1;
}

async function openGpu() {
  if (!navigator.gpu) {
    throw new Error('this browser has no WebGPU (navigator.gpu is missing); the CPU button still works');
  }
  const t0 = performance.now();
  gpu = await Gpu.open(params.get('kernels') || 'auto');
  timings.gpu_open_ms = performance.now() - t0;
  const a = await navigator.gpu.requestAdapter();
  const info = a && a.info ? [a.info.vendor, a.info.architecture, a.info.description].filter((v) => v) : [];
  adapterLabel = `${info.join(' ') || 'unnamed adapter'}, ${gpu.kernels()} kernels`;
}

function settings() {
  const paste = $('paste').checked;
  return {
    model: paste ? $('model-text').value : $('model').value,
    optim: $('optim').value,
    lr: parseFloat($('lr').value),
    steps: parseInt($('steps').value, 10),
    batch: parseInt($('batch').value, 10),
    seed: BigInt(parseInt($('seed').value, 10) || 0),
  };
}

function drawCurves() {
  const c = $('loss');
  const ctx = c.getContext('2d');
  const W = c.width, H = c.height, pad = 40;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  const series = Object.entries(curves).filter(([, s]) => s.losses.length)
    .sort(([a], [b]) => (a === 'gpu' ? -1 : 1));
  const maxSteps = Math.max(1, ...series.map(([, s]) => s.steps));
  const maxLoss = Math.max(0.1, ...series.map(([, s]) => Math.max(...s.losses.slice(0, 5))));
  ctx.strokeStyle = '#999';
  ctx.strokeRect(pad, 10, W - pad - 10, H - pad - 10);
  ctx.fillStyle = '#333';
  ctx.font = '12px sans-serif';
  ctx.fillText('loss', 4, 20);
  ctx.fillText(maxLoss.toFixed(2), 4, 34);
  ctx.fillText('0', 24, H - pad);
  ctx.fillText(`step ${maxSteps}`, W - 70, H - pad + 16);
  let legend = 28;
  for (const [name, s] of series) {
    ctx.strokeStyle = COLOURS[name];
    // The two runs' curves coincide where the GPU matches the CPU: the CPU's is drawn dashed on top.
    ctx.lineWidth = name === 'gpu' ? 3 : 1.5;
    ctx.setLineDash(name === 'cpu' ? [6, 4] : []);
    ctx.beginPath();
    s.losses.forEach((l, i) => {
      const x = pad + (W - pad - 10) * (i + 1) / maxSteps;
      const y = 10 + (H - pad - 10) * (1 - Math.min(l, maxLoss) / maxLoss);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLOURS[name];
    ctx.fillText(`${s.label}: ${s.losses[s.losses.length - 1].toFixed(4)}`, pad + 10, legend);
    legend += 16;
  }
}

function addResult(name, r) {
  const row = $('results').insertRow();
  const pct = (v) => (100 * v).toFixed(2) + '%';
  const cells = [name, name.startsWith('WebGPU') ? 'WebGPU' : r.device, r.steps, r.images_per_s.toFixed(1), pct(r.val_acc), pct(r.test_acc),
                 r.first_log_ms === null ? '' : r.first_log_ms.toFixed(0)];
  cells.forEach((v, i) => {
    const td = row.insertCell();
    td.textContent = v;
    if (i < 2) td.className = 'l';
  });
}

/** Trains on `backend` ('gpu' or 'cpu') with the form's settings; returns the losses and figures. */
async function train(backend, s) {
  if (backend === 'gpu' && !gpu) throw new Error('no WebGPU device: ' + ($('error').textContent || 'not opened'));
  // The CPU blocks the page while it computes: a log point every step keeps it responsive.
  const logEvery = backend === 'gpu' ? 10 : 1;
  const run = new Run(backend === 'gpu' ? gpu.share() : undefined, data, s.model, s.optim, s.lr,
                      s.steps, s.batch, s.seed, logEvery);
  const label = backend === 'gpu' ? `WebGPU (${adapterLabel})` : 'CPU (wasm)';
  curves[backend] = { label, losses: [], steps: s.steps };
  const losses = curves[backend].losses;
  for (;;) {
    const p = JSON.parse(await run.advance());
    if (timings.first_step_ms === undefined) timings.first_step_ms = performance.now() - timings.start;
    losses.push(...p.losses);
    for (const w of p.warnings) showError(w);
    const ep = p.epochs.length ? `, validation ${(100 * p.epochs[p.epochs.length - 1].val_acc).toFixed(2)}%` : '';
    status(`${label}: step ${p.step}/${p.steps}, loss ${losses[losses.length - 1].toFixed(4)}${ep}`);
    drawCurves();
    await yieldToBrowser();
    if (p.done) break;
  }
  status(`${label}: testing…`);
  const result = JSON.parse(await run.finish());
  addResult(label, result);
  status(`${label}: ${s.steps} steps, test accuracy ${(100 * result.test_acc).toFixed(2)}%, ` +
         `${result.images_per_s.toFixed(0)} images/s`);
  lastRun = run;
  return { losses, result };
}

function showChecks(title, rows) {
  const div = document.createElement('div');
  const bad = rows.filter((r) => !r.pass);
  div.innerHTML = `<h3>${title}: <span class="${bad.length ? 'fail' : 'pass'}">` +
    `${rows.length - bad.length}/${rows.length} pass</span></h3>`;
  const table = document.createElement('table');
  table.innerHTML = '<tr><th class="l">check</th><th>worst relative error</th><th>bound</th><th>verdict</th></tr>';
  for (const r of rows) {
    const tr = table.insertRow();
    [r.name, r.err.toExponential(2), r.tol.toExponential(0), r.pass ? 'PASS' : 'FAIL'].forEach((v, i) => {
      const td = tr.insertCell();
      td.textContent = v;
      if (i === 0) td.className = 'l';
      if (i === 3) td.className = r.pass ? 'pass' : 'fail';
    });
  }
  div.appendChild(table);
  $('checks').prepend(div);
}

async function opcheck() {
  const ops = JSON.parse(await gpu.check_ops());
  showChecks(`Every op on ${adapterLabel} against the CPU (wasm)`,
             ops.map((o) => ({ name: o.op, err: o.rel_err, tol: o.tol, pass: o.pass })));
  return ops;
}

async function gradcheck(models) {
  const reports = [];
  for (const m of models) {
    status(`gradcheck ${m}…`);
    await yieldToBrowser();
    reports.push(JSON.parse(await gpu.gradcheck(data, m, 16)));
  }
  showChecks(`gradcheck on ${adapterLabel} (batch 16, loss, every gradient, statistic and update)`,
    reports.map((r) => {
      const worst = r.tensors.reduce((a, b) => (b.rel_err > a.rel_err ? b : a));
      return { name: `${r.model} (worst: ${worst.what} ${worst.name})`, err: Math.max(worst.rel_err, r.loss_rel_err),
               tol: r.tolerance.tensor, pass: r.pass };
    }));
  status('gradcheck done');
  return reports;
}

/** Runs `job` with the buttons locked; its error goes to the page. */
async function guarded(job) {
  if (busy) return;
  busy = true;
  document.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  $('error').textContent = gpuError;
  try {
    return await job();
  } catch (e) {
    showError(e);
  } finally {
    busy = false;
    document.querySelectorAll('button').forEach((b) => { b.disabled = !gpu && GPU_BUTTONS.includes(b.id); });
  }
}

// --- Drawing a digit -----------------------------------------------------------------------------
function setUpDrawing() {
  const c = $('draw');
  const ctx = c.getContext('2d');
  const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, c.width, c.height); $('guess').textContent = ''; };
  clear();
  let down = false;
  let last = null;
  const at = (ev) => { const r = c.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
  c.addEventListener('pointerdown', (ev) => { down = true; last = at(ev); });
  c.addEventListener('pointermove', (ev) => {
    if (!down) return;
    const p = at(ev);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 18;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
  });
  const up = () => { if (down) { down = false; guess(); } };
  c.addEventListener('pointerup', up);
  c.addEventListener('pointerleave', up);
  $('clear').addEventListener('click', clear);
}

async function guess() {
  if (!lastRun) { $('guess').textContent = 'train a model first'; return; }
  const c = $('draw');
  const rgba = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const grey = new Uint8Array(c.width * c.height);
  for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
  try {
    const top = JSON.parse(await lastRun.predict(c.width, c.height, grey));
    $('guess').textContent = top.map((t) => `${t.class}: ${(100 * t.prob).toFixed(1)}%`).join(', ');
  } catch (e) {
    showError(e);
  }
}

// --- Start ---------------------------------------------------------------------------------------
async function main() {
  // In the self-test every error line is collected from the start (opening WebGPU's included).
  if (params.get('test') === '1') window.wgtrainTest = { errors: [], done: false };
  const t0 = performance.now();
  await init();
  timings.wasm_ms = performance.now() - t0;
  for (const name of builtin_models()) $('model').add(new Option(name, name, name === 'cnn3-bn', name === 'cnn3-bn'));
  $('model-text').value = builtin_model_text('cnn3-bn');
  $('paste').addEventListener('change', () => {
    $('model-text').style.display = $('paste').checked ? 'block' : 'none';
    if ($('paste').checked) $('model-text').value = builtin_model_text($('model').value);
  });
  setUpDrawing();
  status('loading MNIST…');
  await loadData();
  status(`${data.describe()}; opening WebGPU…`);
  try {
    await openGpu();
    status(`${data.describe()}; WebGPU: ${adapterLabel}`);
  } catch (e) {
    showError(e);
    gpuError = $('error').textContent;
    GPU_BUTTONS.forEach((id) => { $(id).disabled = true; });
    status(data.describe());
  }
  $('train-gpu').addEventListener('click', () => guarded(() => train('gpu', settings())));
  $('train-cpu').addEventListener('click', () => guarded(() => train('cpu', settings())));
  $('gradcheck').addEventListener('click', () => guarded(() => gradcheck(STUDY)));
  $('opcheck').addEventListener('click', () => guarded(() => opcheck()));
  if (params.get('test') === '1') await selfTest();
}

async function selfTest() {
  const t = window.wgtrainTest;
  if (params.get('model')) $('model').value = params.get('model');
  if (params.get('steps')) $('steps').value = params.get('steps');
  if (params.get('batch')) $('batch').value = params.get('batch');
  t.adapter = gpu ? adapterLabel : null;
  // A bad model file is refused in one line naming the layer (the page shows such lines in #error).
  try {
    new Run(undefined, data, 'version = 1\n[[layer]]\ntype = "dense"\nunits = 0\n', 'adam', 0.001, 1, 1, 1n, 1);
    t.bad_model = 'accepted';
  } catch (e) {
    t.bad_model = oneLine(e);
  }
  await guarded(async () => {
    // Without WebGPU (its one error line is already on the page) the CPU still trains.
    if (gpu && params.get('ops') !== '0') t.ops = await opcheck();
    if (gpu && params.get('gradcheck') !== '0') t.gradcheck = await gradcheck(STUDY);
    if (params.get('train') === '0') return;
    const s = settings();
    t.settings = { ...s, seed: Number(s.seed) };
    if (gpu) t.gpu = await train('gpu', s);
    t.cpu = await train('cpu', s);
    const c = $('draw').getContext('2d');
    c.fillStyle = '#fff';
    c.fillRect(120, 50, 40, 180); // a "1"
    await guess();
    t.guess = $('guess').textContent;
  });
  t.timings = timings;
  t.done = true;
}

main().catch((e) => {
  showError(e);
  status('');
  if (window.wgtrainTest) window.wgtrainTest.done = true;
  else window.wgtrainTest = { errors: [oneLine(e)], done: true };
});
