// The model's prompt post-processing (RapSAM.add_prompt_preds), in
// JavaScript: mask logits at stride 4 of the padded input -> bilinear
// (align_corners=False) to the padded input -> crop to the resized image
// -> bilinear to the original size -> > 0.

// torch's source index and weights for one axis of a bilinear resize
// (area_pixel_compute_source_index with align_corners=False), computed
// in float32 as torch computes them for float tensors.
function axisWeights(inSize, outSize, count) {
  const scale = Math.fround(inSize / outSize);
  const i0 = new Int32Array(count);
  const i1 = new Int32Array(count);
  const w1 = new Float32Array(count);
  for (let d = 0; d < count; d++) {
    let src = Math.fround(Math.fround(scale * (d + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const lo = Math.floor(src);
    i0[d] = lo;
    i1[d] = lo < inSize - 1 ? lo + 1 : lo;
    w1[d] = Math.min(Math.max(Math.fround(src - lo), 0), 1);
  }
  return { i0, i1, w1 };
}

// src [inH, inW] resized to [outH, outW] (of which the first rows x cols
// are computed), as F.interpolate(mode='bilinear', align_corners=False);
// with binary, the values' > 0 as bytes (no float copy of a large image).
function bilinear(src, inH, inW, outH, outW, rows, cols, binary = false) {
  const ys = axisWeights(inH, outH, rows);
  const xs = axisWeights(inW, outW, cols);
  const out = binary ? new Uint8Array(rows * cols) : new Float32Array(rows * cols);
  for (let y = 0; y < rows; y++) {
    const r0 = ys.i0[y] * inW;
    const r1 = ys.i1[y] * inW;
    const wy1 = ys.w1[y];
    const wy0 = 1 - wy1;
    for (let x = 0; x < cols; x++) {
      const a = xs.i0[x];
      const b = xs.i1[x];
      const wx1 = xs.w1[x];
      const wx0 = 1 - wx1;
      const v = wy0 * (wx0 * src[r0 + a] + wx1 * src[r0 + b]) +
        wy1 * (wx0 * src[r1 + a] + wx1 * src[r1 + b]);
      out[y * cols + x] = binary ? v > 0 : v;
    }
  }
  return out;
}

// logits: Float32Array [h4 * w4] of one prompt; meta: the feature
// message's. -> Uint8Array [H * W], 1 inside the mask.
export function promptMask(logits, h4, w4, meta) {
  const [padH, padW] = meta.batch_input_shape;
  const [h, w] = meta.img_shape;
  const [H, W] = meta.ori_shape;
  const padded = bilinear(logits, h4, w4, padH, padW, h, w); // cropped
  return bilinear(padded, h, w, H, W, H, W, true);
}

// A click (x, y) and boxes in original pixels -> the decoder's box in the
// resized image's pixels, as DeployedModel.prompt_boxes makes it (factors
// rounded to float32; a click is the box of +-radius around it).
export function promptBox(prompt, meta, radius) {
  const sx = Math.fround(meta.scale_factor[0]);
  const sy = Math.fround(meta.scale_factor[1]);
  if (prompt.kind === 'click') {
    const cx = Math.fround(prompt.x * sx);
    const cy = Math.fround(prompt.y * sy);
    return [cx - radius, cy - radius, cx + radius, cy + radius].map(Math.fround);
  }
  const [x1, y1, x2, y2] = prompt.box;
  return [x1 * sx, y1 * sy, x2 * sx, y2 * sy].map(Math.fround);
}
