// Reads the server's feature message (rap_sam/deploy/feature_message.py):
// b'RSAMFEAT', uint32 header length, JSON header, then the tensors' data,
// little-endian, each at an 8-byte aligned offset.
const MAGIC = 'RSAMFEAT';
const FORMAT = 'rap_sam.features';
const VERSION = 1;

let halfTable = null;

// float16 bits -> float32, all 65536 values once (a lookup per value is
// faster than bit arithmetic on 10^7 values).
function float16Table() {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) halfTable[h] = sign * frac * 2 ** -24;
    else if (exp === 31) halfTable[h] = frac ? NaN : sign * Infinity;
    else halfTable[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

export function decodeFeatureMessage(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 12 ||
      new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error('the server sent something else than features');
  }
  const length = new DataView(buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
  if (header.format !== FORMAT || header.version !== VERSION) {
    throw new Error(`unknown feature format ${header.format} ${header.version}`);
  }
  const start = 12 + length;
  const tensors = {};
  for (const t of header.tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    let data;
    if (t.dtype === 'float32') {
      data = new Float32Array(buffer, start + t.offset, count);
    } else if (t.dtype === 'float16') {
      const half = new Uint16Array(buffer, start + t.offset, count);
      const table = float16Table();
      data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = table[half[i]];
    } else {
      throw new Error(`unknown dtype ${t.dtype}`);
    }
    tensors[t.name] = { data, shape: t.shape };
  }
  return { tensors, meta: header.meta, bytes: buffer.byteLength };
}
