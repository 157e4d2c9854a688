// Binary payloads from the kernel: {data, dtype, shape} -> typed arrays.

/**
 * @typedef {import("./schema.js").ArrayPayload} ArrayPayload
 * @typedef {{values: Float32Array | Uint8Array | Int32Array, shape: number[]}} Decoded
 */

/**
 * The bytes of a buffer that may arrive as a DataView (ipywidgets), an ArrayBuffer or a view.
 * @param {DataView | ArrayBuffer | ArrayBufferView} data
 * @returns {Uint8Array}
 */
export function bytesOf(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("expected binary data (DataView, ArrayBuffer or typed array)");
}

/**
 * Decode an array payload. Copies the bytes so the result is aligned whatever the buffer's offset.
 * @param {ArrayPayload} payload
 * @returns {Decoded}
 */
export function decode(payload) {
  const bytes = bytesOf(payload.data).slice();
  const count = payload.shape.reduce((a, b) => a * b, 1);
  /** @type {Float32Array | Uint8Array | Int32Array} */
  let values;
  switch (payload.dtype) {
    case "float32":
      values = new Float32Array(bytes.buffer, 0, count);
      break;
    case "uint8":
      values = bytes.subarray(0, count);
      break;
    case "int32":
      values = new Int32Array(bytes.buffer, 0, count);
      break;
    default:
      throw new TypeError(`unsupported dtype ${payload.dtype}`);
  }
  if (values.length !== count) {
    throw new RangeError(`payload holds ${values.length} values, shape ${payload.shape} needs ${count}`);
  }
  return { values, shape: payload.shape };
}

/**
 * Rows of an (H, W) array (or of plane `index` of an (N, H, W) array) as plain number arrays,
 * the form plotly's heatmap z takes.
 * @param {Decoded} decoded
 * @param {number} [index]
 * @returns {number[][]}
 */
export function rows(decoded, index = 0) {
  const [h, w] = decoded.shape.slice(-2);
  const offset = index * h * w;
  /** @type {number[][]} */
  const out = [];
  for (let r = 0; r < h; r++) {
    out.push(Array.from(decoded.values.subarray(offset + r * w, offset + (r + 1) * w)));
  }
  return out;
}

/**
 * A data: URL for an image held in binary (the photo, the mask).
 * @param {DataView | ArrayBuffer | ArrayBufferView} data
 * @param {string} mime
 * @returns {string}
 */
export function dataUrl(data, mime) {
  const bytes = bytesOf(data);
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return `data:${mime};base64,${btoa(binary)}`;
}
