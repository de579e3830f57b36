// JavaScript actions (kind nodejs:default) with the openwhisk npm client:
// create from source, invoke blocking with a result and params, logs,
// errors, update, zipped code; they run inside the sandbox like wasm.
'use strict'

const { describe, it, after } = require('node:test')
const https = require('node:https')
const { assert, ow, unique, rejects, cleanup, env } = require('./helpers')

// crc32 and zip make a stored (uncompressed) zip archive, as `zip -0` would.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
function crc32 (buf) {
  let c = 0xffffffff
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}
function zip (files) {
  const locals = []
  const centrals = []
  let offset = 0
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text)
    const fname = Buffer.from(name)
    const crc = crc32(data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(data.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(fname.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(data.length, 20)
    central.writeUInt32LE(data.length, 24)
    central.writeUInt16LE(fname.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, fname, data)
    centrals.push(central, fname)
    offset += local.length + fname.length + data.length
  }
  const cd = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(Object.keys(files).length, 8)
  end.writeUInt16LE(Object.keys(files).length, 10)
  end.writeUInt32LE(cd.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, cd, end])
}

describe('nodejs actions', () => {
  const name = unique('js')
  const zipped = unique('jszip')
  after(() => cleanup(() => ow.actions.delete({ name }), () => ow.actions.delete({ name: zipped })))

  it('lists the nodejs kinds in GET /api/v1', async () => {
    const info = await new Promise((resolve, reject) => {
      https.get(`${env('CLEMMYS_APIHOST')}/api/v1`, { rejectUnauthorized: false }, res => {
        let body = ''
        res.on('data', c => { body += c })
        res.on('end', () => resolve(JSON.parse(body)))
      }).on('error', reject)
    })
    const kinds = info.runtimes.nodejs.map(r => r.kind)
    for (const k of ['nodejs:default', 'nodejs:20', 'nodejs:22']) assert.ok(kinds.includes(k), JSON.stringify(info.runtimes))
  })

  it('creates an action from JavaScript source (nodejs:default)', async () => {
    const a = await ow.actions.create({
      name,
      action: `function main(params) {
        console.log('hello from', process.env.__OW_ACTION_NAME);
        return { greeting: 'Hello ' + (params.name || 'world') + '!' };
      }`
    })
    assert.equal(a.name, name)
    assert.equal(a.exec.kind, 'nodejs:20', 'nodejs:default is stored as the default version')
    assert.equal(a.version, '0.0.1')
  })

  it('invokes it blocking with params, result only', async () => {
    const res = await ow.actions.invoke({ name, params: { name: 'npm' }, blocking: true, result: true })
    assert.deepEqual(res, { greeting: 'Hello npm!' })
  })

  it('invokes it blocking, with its console output in the logs', async () => {
    const act = await ow.actions.invoke({ name, blocking: true })
    assert.equal(act.response.success, true)
    assert.deepEqual(act.response.result, { greeting: 'Hello world!' })
    assert.ok(act.logs.some(l => / stdout: hello from \/guest\//.test(l)), JSON.stringify(act.logs))
  })

  it('updates it: new code, version 0.0.2, async and a rejected promise', async () => {
    const a = await ow.actions.update({
      name,
      action: `async function main(params) {
        await new Promise(resolve => setTimeout(resolve, 1));
        if (params.fail) throw new Error('failed on purpose');
        return { v: 2, n: params.n };
      }`
    })
    assert.equal(a.version, '0.0.2')
    assert.deepEqual(await ow.actions.invoke({ name, params: { n: 7 }, blocking: true, result: true }), { v: 2, n: 7 })
    const err = await rejects(ow.actions.invoke({ name, params: { fail: true }, blocking: true }), 502, 'rejected promise')
    assert.equal(err.error.response.status, 'application error')
    assert.deepEqual(err.error.response.result, { error: 'failed on purpose' })
  })

  it('creates and invokes a zipped action (require of its own files)', async () => {
    const code = zip({
      'package.json': JSON.stringify({ name: 'zipped', main: 'index.js' }),
      'index.js': "const { shout } = require('./lib/shout'); exports.main = p => ({ said: shout(p.word) })",
      'lib/shout.js': "exports.shout = w => w.toUpperCase() + '!'"
    })
    const a = await ow.actions.create({ name: zipped, action: code }) // a Buffer: sent base64
    assert.equal(a.exec.kind, 'nodejs:20')
    assert.deepEqual(await ow.actions.invoke({ name: zipped, params: { word: 'zip' }, blocking: true, result: true }), { said: 'ZIP!' })
  })

  it('refuses a syntax error (400)', async () => {
    await rejects(ow.actions.create({ name: unique('bad'), action: 'function main( {' }), 400, 'syntax error')
  })
})
