// Fills in Node's Buffer API where goja_nodejs' Buffer stops: the
// encodings it lacks (latin1, binary, ascii, base64url, utf16le) and the
// static and prototype methods functions commonly use. Runs once per
// instance after Buffer is defined.
(function (native, Buffer) {
  'use strict';
  var own = { latin1: 1, binary: 1, ascii: 1, base64url: 1, ucs2: 1, 'ucs-2': 1, utf16le: 1, 'utf-16le': 1 };
  var known = { utf8: 1, 'utf-8': 1, hex: 1, base64: 1 };
  function norm(enc) { return enc === undefined || enc === null ? 'utf8' : String(enc).toLowerCase(); }
  function check(enc) {
    var e = norm(enc);
    if (!own[e] && !known[e]) throw new TypeError('Unknown encoding: ' + enc);
    return e;
  }
  var from = Buffer.from;
  Buffer.from = function (v, enc, len) {
    if (typeof v === 'string') {
      var e = check(enc);
      if (own[e]) return from.call(Buffer, native.encodeString(v, e));
      return from.call(Buffer, v, e === 'utf-8' ? 'utf8' : e);
    }
    if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return from.call(Buffer, v.data);
    return from.apply(Buffer, arguments);
  };
  var toString = Buffer.prototype.toString;
  Buffer.prototype.toString = function (enc, start, end) {
    var e = check(enc);
    if (own[e]) {
      var s = start === undefined ? 0 : Math.max(0, start | 0);
      var t = end === undefined ? this.length : Math.min(this.length, end | 0);
      if (s >= t) return '';
      return native.decodeBytes(new Uint8Array(this.buffer, this.byteOffset + s, t - s).slice().buffer, e);
    }
    return toString.call(this, e === 'utf-8' ? 'utf8' : e, start, end);
  };
  Buffer.isBuffer = function (b) { return b instanceof Buffer; };
  Buffer.isEncoding = function (enc) { var e = norm(enc); return !!(own[e] || known[e]); };
  Buffer.byteLength = function (v, enc) {
    if (typeof v === 'string') return Buffer.from(v, enc).length;
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v.byteLength;
    throw new TypeError('The "string" argument must be of type string or an instance of Buffer or ArrayBuffer');
  };
  Buffer.allocUnsafe = Buffer.allocUnsafeSlow = function (n) { return Buffer.alloc(n); };
  Buffer.compare = function (a, b) { return Buffer.prototype.compare.call(a, b); };
  function wrap(u8) { return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength); }
  Buffer.prototype.subarray = function (s, e) { return wrap(Uint8Array.prototype.subarray.call(this, s, e)); };
  Buffer.prototype.slice = Buffer.prototype.subarray;
  Buffer.prototype.toJSON = function () { return { type: 'Buffer', data: Array.prototype.slice.call(this) }; };
  Buffer.prototype.compare = function (o) {
    var n = Math.min(this.length, o.length);
    for (var i = 0; i < n; i++) if (this[i] !== o[i]) return this[i] < o[i] ? -1 : 1;
    return this.length === o.length ? 0 : (this.length < o.length ? -1 : 1);
  };
  Buffer.prototype.copy = function (target, ts, ss, se) {
    ts = ts || 0; ss = ss || 0; se = se === undefined ? this.length : se;
    var n = Math.max(0, Math.min(se - ss, target.length - ts));
    target.set(Uint8Array.prototype.subarray.call(this, ss, ss + n), ts);
    return n;
  };
  var indexOf = Uint8Array.prototype.indexOf;
  Buffer.prototype.indexOf = function (v, from, enc) {
    if (typeof v === 'number') return indexOf.call(this, v, from);
    var needle = typeof v === 'string' ? Buffer.from(v, enc) : v;
    from = from === undefined ? 0 : (from < 0 ? Math.max(0, this.length + from) : from);
    outer: for (var i = from; i <= this.length - needle.length; i++) {
      for (var j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  };
  Buffer.prototype.includes = function (v, from, enc) { return this.indexOf(v, from, enc) !== -1; };
})
