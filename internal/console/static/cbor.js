// A small CBOR decoder (RFC 8949) for the runtime certificates of the
// attestation API: unsigned and negative integers, byte and text strings,
// arrays, maps, false/true/null and floats. Definite lengths only (what
// the platform writes); bounded depth and size.

const maxDepth = 16;
const maxBytes = 64 * 1024;

export function decode(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new Error('cbor: not bytes');
  if (bytes.length > maxBytes) throw new Error('cbor: too large');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n) => { if (pos + n > bytes.length) throw new Error('cbor: truncated'); };
  const arg = (info) => {
    if (info < 24) return info;
    if (info === 24) { need(1); return bytes[pos++]; }
    if (info === 25) { need(2); const v = dv.getUint16(pos); pos += 2; return v; }
    if (info === 26) { need(4); const v = dv.getUint32(pos); pos += 4; return v; }
    if (info === 27) {
      need(8);
      const v = dv.getBigUint64(pos); pos += 8;
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('cbor: integer too large');
      return Number(v);
    }
    throw new Error('cbor: indefinite or reserved length');
  };
  const item = (depth) => {
    if (depth > maxDepth) throw new Error('cbor: too deep');
    need(1);
    const b = bytes[pos++];
    const major = b >> 5, info = b & 31;
    switch (major) {
      case 0: return arg(info);
      case 1: return -1 - arg(info);
      case 2: { const n = arg(info); need(n); const v = bytes.slice(pos, pos + n); pos += n; return v; }
      case 3: { const n = arg(info); need(n); const v = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(pos, pos + n)); pos += n; return v; }
      case 4: { const n = arg(info); if (n > bytes.length) throw new Error('cbor: bad length'); const a = []; for (let i = 0; i < n; i++) a.push(item(depth + 1)); return a; }
      case 5: {
        const n = arg(info);
        if (n > bytes.length) throw new Error('cbor: bad length');
        const m = new Map();
        for (let i = 0; i < n; i++) { const k = item(depth + 1); m.set(k, item(depth + 1)); }
        return m;
      }
      case 6: arg(info); return item(depth + 1); // a tag: its content
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22 || info === 23) return null;
        if (info === 25) { need(2); const v = dv.getFloat16 ? dv.getFloat16(pos) : NaN; pos += 2; return v; }
        if (info === 26) { need(4); const v = dv.getFloat32(pos); pos += 4; return v; }
        if (info === 27) { need(8); const v = dv.getFloat64(pos); pos += 8; return v; }
        throw new Error('cbor: unsupported simple value');
    }
  };
  const v = item(0);
  if (pos !== bytes.length) throw new Error('cbor: trailing bytes');
  return v;
}

export function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function fromHex(s) {
  if (typeof s !== 'string' || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error('not hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b) {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}
