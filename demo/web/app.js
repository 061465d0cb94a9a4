// The page: an image is encoded once by the server (POST /api/encode), then
// each click (an object) and each dragged box is decoded here by the
// export's prompt_decoder.onnx in onnxruntime-web (wasm).
import { decodeFeatureMessage } from '/feature_message.js';
import { promptBox, promptMask } from '/postprocess.js';

const $ = (id) => document.getElementById(id);
const COLORS = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
  [250, 190, 212], [0, 128, 128]];
// A press that moves fewer display pixels than this is a click, not a box.
const DRAG_PIXELS = 4;

const state = {
  config: null, ort: null, session: null, image: null, masks: [],
  times: [], queue: Promise.resolve(), busy: 0,
};

function showMessage(text) {
  const box = $('message');
  box.textContent = text;
  box.hidden = false;
}

function hideMessage() {
  $('message').hidden = true;
  $('message').textContent = '';
}

function setStatus(text) { $('status').textContent = text; }

function setBusy(delta) {
  state.busy += delta;
  document.body.dataset.busy = state.busy > 0 ? 'yes' : 'no';
}

// fetch with the server's one-line reason as the error's message.
async function request(url, options) {
  let resp;
  try {
    resp = await fetch(url, options);
  } catch (err) {
    throw new Error(`Cannot reach the server at ${location.host}: is ` +
      'demo/web_server.py running? Try again once it is.');
  }
  if (!resp.ok) {
    let reason = `HTTP ${resp.status}`;
    try { reason = (await resp.json()).error || reason; } catch (err) { /* not JSON */ }
    throw new Error(reason);
  }
  return resp;
}

async function loadConfig() {
  if (!state.config) state.config = await (await request('/api/config')).json();
  return state.config;
}

async function loadDecoder() {
  if (state.session) return state.session;
  const config = await loadConfig();
  if (!state.ort) {
    let ort;
    try {
      ort = await import('/ort/ort.wasm.min.mjs');
    } catch (err) {
      throw new Error('onnxruntime-web is not installed on the server: run ' +
        '`make web-deps` (npm ci in demo/web), then reload the page.');
    }
    ort.env.wasm.wasmPaths = '/ort/';
    const params = new URLSearchParams(location.search);
    if (params.has('threads')) ort.env.wasm.numThreads = Number(params.get('threads'));
    state.ort = ort;
  }
  let bytes;
  try {
    bytes = await (await request(config.decoder_url)).arrayBuffer();
  } catch (err) {
    throw new Error(`Cannot load the prompt decoder: ${err.message}`);
  }
  // ?opt=disabled|basic|extended|all (the default): for the benchmark.
  const level = new URLSearchParams(location.search).get('opt') || 'all';
  state.session = await state.ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'], graphOptimizationLevel: level,
  });
  return state.session;
}

function featureFeeds(message) {
  const { ort, config } = state;
  const feeds = {};
  for (const name of config.feature_names) {
    const t = message.tensors[name];
    feeds[name] = new ort.Tensor('float32', t.data, t.shape);
  }
  if (config.img_shape_input) {
    const [h, w] = message.meta.img_shape;
    feeds[config.img_shape_input] = config.img_shape_dtype === 'int64'
      ? new ort.Tensor('int64', BigInt64Array.from([BigInt(h), BigInt(w)]), [2])
      : new ort.Tensor('int32', Int32Array.from([h, w]), [2]);
  }
  return feeds;
}

async function openImage(file) {
  if (!file) return;
  hideMessage();
  setBusy(1);
  try {
    const config = await loadConfig();
    if (file.size > config.max_upload_bytes) {
      throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB, ` +
        `above the limit of ${config.max_upload_bytes / 2 ** 20} MB: downscale it.`);
    }
    setStatus(`Encoding ${file.name} on the server...`);
    const t0 = performance.now();
    const resp = await request('/api/encode', {
      method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' },
    });
    const message = decodeFeatureMessage(await resp.arrayBuffer());
    const encodeMs = performance.now() - t0;
    const [H, W] = message.meta.ori_shape;
    let bitmap = null;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    } catch (err) { /* the server reads formats a browser cannot show */ }
    try {
      await loadDecoder();
    } catch (err) {
      showMessage(err.message);
    }
    state.image = { name: file.name, message, bitmap, width: W, height: H,
      feeds: state.ort ? featureFeeds(message) : null };
    state.masks = [];
    drawImage();
    render();
    setStatus(`${file.name}: ${W} x ${H}, encoded in ${encodeMs.toFixed(0)} ms ` +
      `(${(message.bytes / 2 ** 20).toFixed(1)} MB of features). ` +
      'Click an object or drag a box.');
    document.body.dataset.image = file.name;
  } catch (err) {
    showMessage(err.message);
    setStatus(state.image ? `${state.image.name}: click an object or drag a box.`
      : 'Open or drop an image.');
  } finally {
    setBusy(-1);
  }
}

function drawImage() {
  const { width: W, height: H, bitmap } = state.image;
  for (const canvas of [$('image-canvas'), $('mask-canvas')]) {
    canvas.width = W;
    canvas.height = H;
  }
  const ctx = $('image-canvas').getContext('2d');
  if (bitmap) ctx.drawImage(bitmap, 0, 0, W, H);
  else { ctx.fillStyle = '#ccc'; ctx.fillRect(0, 0, W, H); }
  $('stage').classList.remove('empty');
}

function render() {
  const canvas = $('mask-canvas');
  const ctx = canvas.getContext('2d');
  const { width: W, height: H } = canvas;
  ctx.clearRect(0, 0, W, H);
  if (state.masks.length) {
    const pixels = ctx.createImageData(W, H);
    const rgba = pixels.data;
    state.masks.forEach((m) => {
      const [r, g, b] = m.color;
      for (let i = 0; i < m.mask.length; i++) {
        if (m.mask[i]) {
          rgba[4 * i] = r; rgba[4 * i + 1] = g; rgba[4 * i + 2] = b; rgba[4 * i + 3] = 120;
        }
      }
    });
    ctx.putImageData(pixels, 0, 0);
  }
  const size = Math.max(10, Math.round(Math.max(W, H) / 40));
  ctx.font = `bold ${size}px sans-serif`;
  ctx.lineWidth = Math.max(1, size / 8);
  for (const m of state.masks) {
    const [r, g, b] = m.color;
    ctx.strokeStyle = ctx.fillStyle = `rgb(${r},${g},${b})`;
    let x, y;
    if (m.prompt.kind === 'click') {
      ({ x, y } = m.prompt);
      ctx.beginPath();
      ctx.arc(x + 0.5, y + 0.5, size / 3, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      const [x1, y1, x2, y2] = m.prompt.box;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      [x, y] = [x1, y1];
    }
    const label = `IoU ${m.iou.toFixed(2)}`;
    ctx.lineWidth = size / 5;
    ctx.strokeStyle = 'white';
    ctx.strokeText(label, x + size / 2, Math.max(size, y - size / 3));
    ctx.fillText(label, x + size / 2, Math.max(size, y - size / 3));
  }
  const list = $('mask-list');
  list.replaceChildren(...state.masks.map((m) => {
    const li = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = `rgb(${m.color.join(',')})`;
    const where = m.prompt.kind === 'click' ? `click (${m.prompt.x}, ${m.prompt.y})`
      : `box (${m.prompt.box.join(', ')})`;
    li.append(swatch, `${where}: IoU ${m.iou.toFixed(3)}, ${m.label}, ` +
      `${m.decodeMs.toFixed(1)} ms`);
    return li;
  }));
  $('undo-button').disabled = $('clear-button').disabled = !state.masks.length;
  document.body.dataset.masks = String(state.masks.length);
}

// Decodes one prompt (in original-image pixels) on the current image.
async function decodePrompt(prompt) {
  const image = state.image;
  if (!image) return null;
  let session;
  try {
    session = await loadDecoder();
    if (!image.feeds) image.feeds = featureFeeds(image.message);
  } catch (err) {
    showMessage(err.message);
    return null;
  }
  const { config, ort } = state;
  const { meta } = image.message;
  const box = promptBox(prompt, meta, config.click_radius);
  const feeds = { ...image.feeds,
    [config.boxes_input]: new ort.Tensor('float32', Float32Array.from(box), [1, 4]) };
  const t0 = performance.now();
  const out = await session.run(feeds);
  const t1 = performance.now();
  const logits = out.mask_logits;
  const [, , h4, w4] = logits.dims;
  const mask = promptMask(logits.data, h4, w4, meta);
  const t2 = performance.now();
  if (state.image !== image) return null; // another image came meanwhile
  const cls = out.cls_logits.data;
  let best = 0;
  for (let k = 1; k < cls.length - 1; k++) if (cls[k] > cls[best]) best = k;
  const entry = {
    prompt, mask, iou: out.iou.data[0], label: config.classes[best] || '',
    decodeMs: t1 - t0, postMs: t2 - t1,
    color: COLORS[state.masks.length % COLORS.length],
  };
  state.masks.push(entry);
  state.times.push(entry.decodeMs);
  const time = $('decode-time');
  time.textContent = `${entry.decodeMs.toFixed(1)} ms (+ ${entry.postMs.toFixed(1)} ms ` +
    'to upsample the mask)';
  time.dataset.ms = entry.decodeMs.toFixed(3);
  render();
  hideMessage();
  return { decodeMs: entry.decodeMs, postMs: entry.postMs, iou: entry.iou };
}

// Prompts run one after another, in the order given.
function addPrompt(prompt) {
  setBusy(1);
  const run = state.queue.then(() => decodePrompt(prompt)).catch((err) => {
    showMessage(`Decoding failed: ${err.message}`);
    return null;
  }).finally(() => setBusy(-1));
  state.queue = run;
  return run;
}

function imagePoint(event) {
  const canvas = $('mask-canvas');
  const rect = canvas.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left) * canvas.width / rect.width,
    y: (event.clientY - rect.top) * canvas.height / rect.height,
    screenX: event.clientX, screenY: event.clientY,
  };
}

function setupPointer() {
  const canvas = $('mask-canvas');
  const dragBox = document.createElement('div');
  dragBox.id = 'drag-box';
  Object.assign(dragBox.style, { position: 'absolute', border: '2px dashed #2a7ae2',
    pointerEvents: 'none', display: 'none' });
  $('stage').append(dragBox);
  let start = null;
  canvas.addEventListener('mousedown', (event) => {
    if (event.button !== 0 || !state.image) return;
    event.preventDefault();
    start = imagePoint(event);
  });
  window.addEventListener('mousemove', (event) => {
    if (!start) return;
    const rect = canvas.getBoundingClientRect();
    const [x1, x2] = [start.screenX, event.clientX].sort((a, b) => a - b);
    const [y1, y2] = [start.screenY, event.clientY].sort((a, b) => a - b);
    Object.assign(dragBox.style, { display: 'block', left: `${x1 - rect.left}px`,
      top: `${y1 - rect.top}px`, width: `${x2 - x1}px`, height: `${y2 - y1}px` });
  });
  window.addEventListener('mouseup', (event) => {
    if (!start || event.button !== 0) return;
    const end = imagePoint(event);
    const from = start;
    start = null;
    dragBox.style.display = 'none';
    const { width: W, height: H } = canvas;
    const moved = Math.hypot(end.screenX - from.screenX, end.screenY - from.screenY);
    if (moved < DRAG_PIXELS) {
      // The pixel pressed, in the image's own pixels.
      addPrompt({ kind: 'click', x: Math.min(W - 1, Math.max(0, Math.floor(from.x))),
        y: Math.min(H - 1, Math.max(0, Math.floor(from.y))) });
      return;
    }
    const clip = (v, hi) => Math.min(hi, Math.max(0, Math.round(v)));
    const box = [clip(Math.min(from.x, end.x), W), clip(Math.min(from.y, end.y), H),
      clip(Math.max(from.x, end.x), W), clip(Math.max(from.y, end.y), H)];
    if (box[2] > box[0] && box[3] > box[1]) addPrompt({ kind: 'box', box });
  });
}

function setup() {
  $('file-input').addEventListener('change', (event) => {
    openImage(event.target.files[0]);
    event.target.value = ''; // the same file may be opened again
  });
  const stage = $('stage');
  stage.addEventListener('dragover', (event) => {
    event.preventDefault();
    stage.classList.add('dragging');
  });
  stage.addEventListener('dragleave', () => stage.classList.remove('dragging'));
  stage.addEventListener('drop', (event) => {
    event.preventDefault();
    stage.classList.remove('dragging');
    openImage(event.dataTransfer.files[0]);
  });
  $('undo-button').addEventListener('click', () => { state.masks.pop(); render(); });
  $('clear-button').addEventListener('click', () => { state.masks = []; render(); });
  setupPointer();
  document.body.dataset.masks = '0';
  setBusy(1);
  setStatus('Loading the prompt decoder...');
  loadDecoder().then(() => {
    setStatus('Open or drop an image.');
  }).catch((err) => {
    showMessage(err.message);
    setStatus('Open or drop an image.');
  }).finally(() => {
    document.body.dataset.ready = 'yes';
    setBusy(-1);
  });
}

// For tests and the benchmark: the same paths as the mouse takes.
window.rapSam = {
  addPrompt,
  prompts: () => state.masks.map((m) => m.prompt),
  decodeTimes: () => state.times.slice(),
  scale: () => (state.config ? state.config.scale : null),
  crossOriginIsolated: () => window.crossOriginIsolated,
  numThreads: () => (state.ort ? state.ort.env.wasm.numThreads : null),
  // Mask i at the original size as run lengths of 0s and 1s, row-major,
  // starting with a run of 0s.
  maskRuns(i) {
    const { mask } = state.masks[i];
    const counts = [];
    let value = 0;
    let run = 0;
    for (let k = 0; k < mask.length; k++) {
      if (mask[k] !== value) { counts.push(run); run = 0; value = mask[k]; }
      run++;
    }
    counts.push(run);
    return { height: state.image.height, width: state.image.width, counts,
      iou: state.masks[i].iou };
  },
};

setup();
