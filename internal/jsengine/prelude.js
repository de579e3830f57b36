// The JavaScript side of the engine's globals: what a portable Node.js
// function commonly needs, over a few natives from Go (globals.go). It runs
// once per instance, before the action's code.
(function (native, global) {
  'use strict';

  // --- inspect: console's formatting, close to Node's util.inspect ---
  function inspect(v, depth, seen) {
    if (depth === undefined) depth = 2;
    seen = seen || [];
    switch (typeof v) {
      case 'string': return seen.length ? quote(v) : v;
      case 'number': return Object.is(v, -0) ? '-0' : String(v);
      case 'bigint': return String(v) + 'n';
      case 'undefined': return 'undefined';
      case 'boolean': return String(v);
      case 'symbol': return v.toString();
      case 'function': return v.name ? '[Function: ' + v.name + ']' : '[Function (anonymous)]';
    }
    if (v === null) return 'null';
    if (v instanceof Error) return v.stack || (v.name + ': ' + v.message);
    if (seen.indexOf(v) >= 0) return '[Circular *1]';
    if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (typeof Buffer === 'function' && Buffer.isBuffer && Buffer.isBuffer(v)) {
      var hex = [];
      for (var i = 0; i < Math.min(v.length, 50); i++) hex.push((v[i] < 16 ? '0' : '') + v[i].toString(16));
      return '<Buffer' + (hex.length ? ' ' + hex.join(' ') : '') + (v.length > 50 ? ' ... ' + (v.length - 50) + ' more bytes' : '') + '>';
    }
    if (v instanceof Promise) return 'Promise { <pending> }';
    if (depth < 0) return Array.isArray(v) ? '[Array]' : '[Object]';
    seen = seen.concat([v]);
    var parts = [];
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      var n = Math.min(v.length, 100);
      for (var j = 0; j < n; j++) parts.push(inspect(v[j], depth - 1, seen));
      if (v.length > n) parts.push('... ' + (v.length - n) + ' more items');
      var prefix = Array.isArray(v) ? '' : v.constructor.name + '(' + v.length + ') ';
      return prefix + (parts.length ? '[ ' + parts.join(', ') + ' ]' : '[]');
    }
    if (v instanceof Map) {
      v.forEach(function (val, key) { parts.push(inspect(key, depth - 1, seen) + ' => ' + inspect(val, depth - 1, seen)); });
      return 'Map(' + v.size + ') {' + (parts.length ? ' ' + parts.join(', ') + ' ' : '') + '}';
    }
    if (v instanceof Set) {
      v.forEach(function (val) { parts.push(inspect(val, depth - 1, seen)); });
      return 'Set(' + v.size + ') {' + (parts.length ? ' ' + parts.join(', ') + ' ' : '') + '}';
    }
    var keys = Object.keys(v);
    for (var k = 0; k < keys.length; k++) {
      var key = keys[k];
      var name = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? key : quote(key);
      parts.push(name + ': ' + inspect(v[key], depth - 1, seen));
    }
    var ctor = v.constructor && v.constructor !== Object && typeof v.constructor.name === 'string' && v.constructor.name ? v.constructor.name + ' ' : '';
    if (Object.getPrototypeOf(v) === null) ctor = '[Object: null prototype] ';
    return ctor + (parts.length ? '{ ' + parts.join(', ') + ' }' : '{}');
  }
  function quote(s) { return "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n') + "'"; }

  function format() {
    var args = Array.prototype.slice.call(arguments);
    var out = '';
    var i = 0;
    if (typeof args[0] === 'string') {
      var f = args[0];
      i = 1;
      out = f.replace(/%([sdifjoOc%])/g, function (m, c) {
        if (c === '%') return '%';
        if (i >= args.length) return m;
        var a = args[i++];
        switch (c) {
          case 's': return typeof a === 'string' ? a : inspect(a, 1);
          case 'd': case 'i': return typeof a === 'object' ? 'NaN' : String(c === 'i' ? parseInt(a) : Number(a));
          case 'f': return String(parseFloat(a));
          case 'j': try { return JSON.stringify(a); } catch (e) { return '[Circular]'; }
          case 'c': return '';
          default: return inspect(a);
        }
      });
    }
    for (; i < args.length; i++) out += (out === '' && i === 0 ? '' : ' ') + (typeof args[i] === 'string' ? args[i] : inspect(args[i]));
    return out;
  }

  // --- console: lines to the activation's logs, stamped like OpenWhisk's ---
  var counts = {}, timers = {};
  var console = {
    log: function () { native.log(false, format.apply(null, arguments)); },
    info: function () { native.log(false, format.apply(null, arguments)); },
    debug: function () { native.log(false, format.apply(null, arguments)); },
    warn: function () { native.log(true, format.apply(null, arguments)); },
    error: function () { native.log(true, format.apply(null, arguments)); },
    trace: function () { var e = new Error(format.apply(null, arguments)); e.name = 'Trace'; native.log(true, e.stack); },
    dir: function (o) { native.log(false, inspect(o)); },
    assert: function (ok) { if (!ok) native.log(true, 'Assertion failed' + (arguments.length > 1 ? ': ' + format.apply(null, Array.prototype.slice.call(arguments, 1)) : '')); },
    count: function (l) { l = l === undefined ? 'default' : String(l); counts[l] = (counts[l] || 0) + 1; native.log(false, l + ': ' + counts[l]); },
    time: function (l) { timers[l === undefined ? 'default' : String(l)] = Date.now(); },
    timeEnd: function (l) { l = l === undefined ? 'default' : String(l); if (l in timers) { native.log(false, l + ': ' + (Date.now() - timers[l]) + 'ms'); delete timers[l]; } },
  };
  console.table = console.log;

  // --- timers, resolved within the activation (the engine runs them while
  // it waits for the action's promise) ---
  function Timeout(id) { this._id = id; }
  Timeout.prototype.ref = function () { return this; };
  Timeout.prototype.unref = function () { return this; };
  Timeout.prototype.hasRef = function () { return true; };
  Timeout.prototype.refresh = function () { native.refreshTimer(this._id); return this; };
  Timeout.prototype[Symbol.toPrimitive] = function () { return this._id; };
  function callback(fn, args) {
    if (typeof fn !== 'function') throw new TypeError('The "callback" argument must be of type function');
    return args.length ? function () { fn.apply(undefined, args); } : fn;
  }
  function clear(t) {
    if (t === undefined || t === null) return;
    var id = typeof t === 'object' ? t._id : Number(t);
    if (id > 0) native.clearTimer(id);
  }
  var timersModule = {
    setTimeout: function (fn, ms) { return new Timeout(native.setTimer(callback(fn, Array.prototype.slice.call(arguments, 2)), Number(ms) || 0, false)); },
    setInterval: function (fn, ms) { return new Timeout(native.setTimer(callback(fn, Array.prototype.slice.call(arguments, 2)), Number(ms) || 0, true)); },
    setImmediate: function (fn) { return new Timeout(native.setTimer(callback(fn, Array.prototype.slice.call(arguments, 1)), -1, false)); },
    clearTimeout: clear, clearInterval: clear, clearImmediate: clear,
  };
  function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new TypeError('The "callback" argument must be of type function');
    Promise.resolve().then(fn);
  }

  // --- TextEncoder / TextDecoder (UTF-8) ---
  function bytesOf(v) {
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    throw new TypeError('The "input" argument must be an instance of ArrayBuffer or ArrayBufferView');
  }
  function TextEncoder() {}
  Object.defineProperty(TextEncoder.prototype, 'encoding', { get: function () { return 'utf-8'; } });
  TextEncoder.prototype.encode = function (s) { return new Uint8Array(native.utf8Encode(s === undefined ? '' : String(s))); };
  TextEncoder.prototype.encodeInto = function (s, dest) {
    var b = new Uint8Array(native.utf8Encode(String(s)));
    var n = Math.min(b.length, dest.length);
    while (n > 0 && n < b.length && (b[n] & 0xc0) === 0x80) n--; // whole characters only
    dest.set(b.subarray(0, n));
    return { read: native.utf8Decode(b.buffer.slice(0, n), false).length, written: n };
  };
  function TextDecoder(label, options) {
    label = label === undefined ? 'utf-8' : String(label).trim().toLowerCase();
    if (label !== 'utf-8' && label !== 'utf8' && label !== 'unicode-1-1-utf-8') {
      throw new RangeError('The "' + label + '" encoding is not supported');
    }
    this._fatal = !!(options && options.fatal);
    this._ignoreBOM = !!(options && options.ignoreBOM);
  }
  Object.defineProperty(TextDecoder.prototype, 'encoding', { get: function () { return 'utf-8'; } });
  Object.defineProperty(TextDecoder.prototype, 'fatal', { get: function () { return this._fatal; } });
  Object.defineProperty(TextDecoder.prototype, 'ignoreBOM', { get: function () { return this._ignoreBOM; } });
  TextDecoder.prototype.decode = function (input) {
    if (input === undefined) return '';
    var b = bytesOf(input);
    var s = native.utf8Decode(b.slice().buffer, this._fatal);
    if (!this._ignoreBOM && s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    return s;
  };

  // --- crypto: randomness from the sandbox (the host's crypto/rand) and
  // hashes; no keys leave the function ---
  function getRandomValues(ta) {
    if (!ArrayBuffer.isView(ta) || ta instanceof Float32Array || ta instanceof Float64Array || ta instanceof DataView) {
      throw new TypeError('The data argument must be an integer-type TypedArray');
    }
    if (ta.byteLength > 65536) {
      var e = new Error("The ArrayBufferView's byte length (" + ta.byteLength + ') exceeds the number of bytes of entropy available via this API (65536)');
      e.name = 'QuotaExceededError';
      throw e;
    }
    new Uint8Array(ta.buffer, ta.byteOffset, ta.byteLength).set(new Uint8Array(native.randomBytes(ta.byteLength)));
    return ta;
  }
  function Hash(kind, alg, key) { this._h = native.newHash(kind, String(alg).toLowerCase(), key); }
  Hash.prototype.update = function (data, enc) {
    native.hashUpdate(this._h, typeof data === 'string' ? Buffer.from(data, enc) : bytesOf(data));
    return this;
  };
  Hash.prototype.digest = function (enc) {
    var b = Buffer.from(native.hashDigest(this._h));
    return enc === undefined || enc === 'buffer' ? b : b.toString(enc);
  };
  function keyBytes(k) { return typeof k === 'string' ? Buffer.from(k) : bytesOf(k); }
  var cryptoModule = {
    randomUUID: function () { return native.randomUUID(); },
    getRandomValues: getRandomValues,
    randomBytes: function (n, cb) {
      n = Number(n);
      if (!(n >= 0 && n <= 0x7fffffff) || n !== Math.floor(n)) throw new RangeError('The "size" argument is out of range');
      var b = Buffer.from(native.randomBytes(n));
      if (typeof cb === 'function') { timersModule.setImmediate(function () { cb(null, b); }); return undefined; }
      return b;
    },
    randomInt: function (min, max) {
      if (max === undefined) { max = min; min = 0; }
      var range = max - min;
      if (!(range > 0) || range > 0xffffffffffff) throw new RangeError('The "max" argument must be greater than "min"');
      var limit = Math.floor(0x1000000000000 / range) * range, x;
      do { var b = new Uint8Array(native.randomBytes(6)); x = 0; for (var i = 0; i < 6; i++) x = x * 256 + b[i]; } while (x >= limit);
      return min + (x % range);
    },
    createHash: function (alg) { return new Hash('hash', alg); },
    createHmac: function (alg, key) { return new Hash('hmac', alg, keyBytes(key)); },
    timingSafeEqual: function (a, b) {
      a = bytesOf(a); b = bytesOf(b);
      if (a.length !== b.length) throw new RangeError('Input buffers must have the same byte length');
      return native.timingSafeEqual(a.slice().buffer, b.slice().buffer);
    },
    getHashes: function () { return ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512']; },
  };
  cryptoModule.webcrypto = { getRandomValues: getRandomValues, randomUUID: cryptoModule.randomUUID };
  var crypto = { getRandomValues: getRandomValues, randomUUID: cryptoModule.randomUUID };

  // --- path (POSIX) ---
  function normalizeArray(parts, absolute) {
    var out = [];
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i];
      if (!p || p === '.') continue;
      if (p === '..') { if (out.length && out[out.length - 1] !== '..') out.pop(); else if (!absolute) out.push('..'); }
      else out.push(p);
    }
    return out;
  }
  var path = {
    sep: '/', delimiter: ':',
    normalize: function (p) {
      var abs = p.charAt(0) === '/', trail = p.slice(-1) === '/';
      var s = normalizeArray(p.split('/'), abs).join('/');
      if (!s && !abs) s = '.';
      if (s && trail) s += '/';
      return (abs ? '/' : '') + s;
    },
    join: function () {
      var parts = Array.prototype.filter.call(arguments, function (a) { if (typeof a !== 'string') throw new TypeError('Path must be a string'); return a; });
      return parts.length ? path.normalize(parts.join('/')) : '.';
    },
    resolve: function () {
      var r = '', abs = false;
      for (var i = arguments.length - 1; i >= -1 && !abs; i--) {
        var p = i >= 0 ? arguments[i] : '/action';
        if (typeof p !== 'string') throw new TypeError('Path must be a string');
        if (!p) continue;
        r = p + '/' + r;
        abs = p.charAt(0) === '/';
      }
      r = normalizeArray(r.split('/'), true).join('/');
      return '/' + r;
    },
    isAbsolute: function (p) { return p.charAt(0) === '/'; },
    dirname: function (p) {
      var s = p.replace(/\/+$/, '');
      var i = s.lastIndexOf('/');
      if (i < 0) return '.';
      return i === 0 ? '/' : s.slice(0, i);
    },
    basename: function (p, ext) {
      var b = p.replace(/\/+$/, '');
      b = b.slice(b.lastIndexOf('/') + 1);
      if (ext && b.slice(-ext.length) === ext && b !== ext) b = b.slice(0, -ext.length);
      return b;
    },
    extname: function (p) {
      var b = path.basename(p);
      var i = b.lastIndexOf('.');
      return i <= 0 ? '' : b.slice(i);
    },
    relative: function (from, to) {
      var f = path.resolve(from).split('/').filter(Boolean), t = path.resolve(to).split('/').filter(Boolean);
      var i = 0;
      while (i < f.length && i < t.length && f[i] === t[i]) i++;
      return f.slice(i).map(function () { return '..'; }).concat(t.slice(i)).join('/');
    },
    parse: function (p) {
      var base = path.basename(p), ext = path.extname(p);
      return { root: p.charAt(0) === '/' ? '/' : '', dir: path.dirname(p), base: base, ext: ext, name: ext ? base.slice(0, -ext.length) : base };
    },
    format: function (o) { var dir = o.dir || o.root || ''; var base = o.base || ((o.name || '') + (o.ext || '')); return dir ? (dir === o.root ? dir + base : dir + '/' + base) : base; },
  };
  path.posix = path;

  // --- events: a small EventEmitter ---
  function EventEmitter() { this._events = {}; }
  EventEmitter.prototype.on = EventEmitter.prototype.addListener = function (ev, fn) {
    if (!this._events) this._events = {};
    (this._events[ev] = this._events[ev] || []).push(fn);
    return this;
  };
  EventEmitter.prototype.once = function (ev, fn) {
    var self = this;
    function w() { self.off(ev, w); fn.apply(self, arguments); }
    w.listener = fn;
    return this.on(ev, w);
  };
  EventEmitter.prototype.off = EventEmitter.prototype.removeListener = function (ev, fn) {
    var l = this._events && this._events[ev];
    if (l) this._events[ev] = l.filter(function (x) { return x !== fn && x.listener !== fn; });
    return this;
  };
  EventEmitter.prototype.removeAllListeners = function (ev) { if (ev === undefined) this._events = {}; else if (this._events) delete this._events[ev]; return this; };
  EventEmitter.prototype.emit = function (ev) {
    var l = this._events && this._events[ev];
    if (!l || !l.length) { if (ev === 'error') throw arguments[1] instanceof Error ? arguments[1] : new Error('Unhandled error.'); return false; }
    var args = Array.prototype.slice.call(arguments, 1);
    l.slice().forEach(function (fn) { fn.apply(this, args); }, this);
    return true;
  };
  EventEmitter.prototype.listenerCount = function (ev) { return ((this._events && this._events[ev]) || []).length; };
  EventEmitter.prototype.listeners = function (ev) { return ((this._events && this._events[ev]) || []).slice(); };
  EventEmitter.prototype.eventNames = function () { return Object.keys(this._events || {}); };
  EventEmitter.prototype.setMaxListeners = function () { return this; };
  EventEmitter.EventEmitter = EventEmitter;
  EventEmitter.defaultMaxListeners = 10;

  // --- util: what goja_nodejs' lacks ---
  function promisify(fn) {
    if (typeof fn !== 'function') throw new TypeError('The "original" argument must be of type function');
    return function () {
      var self = this, args = Array.prototype.slice.call(arguments);
      return new Promise(function (resolve, reject) {
        fn.apply(self, args.concat([function (err, v) { if (err) reject(err); else resolve(v); }]));
      });
    };
  }
  function inherits(ctor, superCtor) {
    Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
    Object.setPrototypeOf(ctor, superCtor);
    ctor.super_ = superCtor;
  }
  var util = {
    format: format, inspect: inspect, promisify: promisify, inherits: inherits,
    isDeepStrictEqual: function (a, b) { return JSON.stringify(a) === JSON.stringify(b); },
    types: { isPromise: function (p) { return p instanceof Promise; }, isDate: function (d) { return d instanceof Date; }, isRegExp: function (r) { return r instanceof RegExp; } },
    TextEncoder: TextEncoder, TextDecoder: TextDecoder,
  };

  // --- process ---
  var hr0 = native.nanotime();
  var process = new EventEmitter();
  process.env = {};
  process.argv = ['node', '/action'];
  process.argv0 = 'node';
  process.execArgv = [];
  process.version = native.nodeVersion;
  process.versions = { node: native.nodeVersion.slice(1) };
  process.release = { name: 'node' };
  process.platform = 'linux';
  process.arch = 'wasm32';
  process.pid = 1;
  process.ppid = 0;
  process.title = 'node';
  process.exitCode = undefined;
  process.cwd = function () { return '/action'; };
  process.chdir = function () { throw new Error('process.chdir is not available: clemmys functions have no file system'); };
  process.uptime = function () { return (native.nanotime() - hr0) / 1e9; };
  process.hrtime = function (prev) {
    var t = native.nanotime();
    var s = Math.floor(t / 1e9), ns = t % 1e9;
    if (prev) { s -= prev[0]; ns -= prev[1]; if (ns < 0) { s--; ns += 1e9; } }
    return [s, ns];
  };
  process.hrtime.bigint = function () { return BigInt(native.nanotime()); };
  process.memoryUsage = function () { var m = native.memory(); return { rss: m, heapTotal: m, heapUsed: m, external: 0, arrayBuffers: 0 }; };
  process.nextTick = function (fn) { var args = Array.prototype.slice.call(arguments, 1); queueMicrotask(function () { fn.apply(undefined, args); }); };
  process.exit = function (code) { native.exit(code === undefined ? (process.exitCode || 0) : Number(code) | 0); };
  process.emitWarning = function (w) { native.log(true, '(node) Warning: ' + (w && w.message ? w.message : String(w))); };
  process.stdout = { write: function (s) { native.log(false, String(s).replace(/\n$/, '')); return true; }, isTTY: false };
  process.stderr = { write: function (s) { native.log(true, String(s).replace(/\n$/, '')); return true; }, isTTY: false };

  // --- what a function cannot have: no network, no file system ---
  function unavailable(name, what) {
    var e = new Error(name + ' is not available: clemmys functions have no ' + what);
    e.code = 'ERR_CLEMMYS_UNAVAILABLE';
    return e;
  }
  function fetch() { return Promise.reject(unavailable('fetch', 'network access')); }
  var noModules = {
    fs: 'file system', 'fs/promises': 'file system', net: 'network access', http: 'network access',
    https: 'network access', http2: 'network access', dgram: 'network access', dns: 'network access',
    tls: 'network access', child_process: 'processes', cluster: 'processes', worker_threads: 'threads',
    inspector: 'debugger', v8: 'V8 engine', vm: 'V8 engine',
  };

  var modules = {
    crypto: cryptoModule, path: path, 'path/posix': path, events: EventEmitter, util: util,
    timers: timersModule, process: process, console: console,
    string_decoder: { StringDecoder: function () { var d = new TextDecoder(); this.write = function (b) { return d.decode(b); }; this.end = function (b) { return b ? d.decode(b) : ''; }; } },
    os: { EOL: '\n', platform: function () { return 'linux'; }, type: function () { return 'Linux'; }, arch: function () { return 'wasm32'; }, hostname: function () { return 'clemmys'; }, tmpdir: function () { return '/tmp'; }, cpus: function () { return []; }, totalmem: function () { return native.memory(); }, freemem: function () { return 0; }, endianness: function () { return 'LE'; } },
  };

  global.console = console;
  global.process = process;
  global.setTimeout = timersModule.setTimeout;
  global.setInterval = timersModule.setInterval;
  global.setImmediate = timersModule.setImmediate;
  global.clearTimeout = clear;
  global.clearInterval = clear;
  global.clearImmediate = clear;
  global.queueMicrotask = queueMicrotask;
  global.TextEncoder = TextEncoder;
  global.TextDecoder = TextDecoder;
  global.crypto = crypto;
  global.fetch = fetch;
  global.global = global;
  global.atob = function (s) { return Buffer.from(String(s), 'base64').toString('latin1'); };
  global.btoa = function (s) {
    s = String(s);
    if (/[^\u0000-\u00ff]/.test(s)) throw new Error('Invalid character');
    return Buffer.from(s, 'latin1').toString('base64');
  };
  global.structuredClone = function (v) { return v === undefined ? undefined : JSON.parse(JSON.stringify(v)); };

  return {
    modules: modules, unavailable: noModules,
    unavailableError: function (name) { return unavailable("module '" + name + "'", noModules[name]); },
    inspect: inspect,
  };
})
