// Actions with the openwhisk npm client: create (wasm code from a file),
// invoke, get, list, update, delete, conflicts, default parameters.
'use strict'

const { describe, it, after } = require('node:test')
const { assert, ow, hello, echo, unique, createAction, rejects, waitActivation, cleanup } = require('./helpers')

describe('actions', () => {
  const name = unique('hello')
  after(() => cleanup(() => ow.actions.delete({ name })))

  it('creates an action from a wasm module', async () => {
    const a = await createAction(name, hello())
    assert.equal(a.name, name)
    assert.equal(a.namespace, 'guest')
    assert.equal(a.version, '0.0.1')
    assert.equal(a.exec.kind, 'wasm')
    assert.equal(a.exec.binary, true)
    assert.equal(a.exec.code, undefined, 'the code is never returned')
    assert.ok(Array.isArray(a.annotations))
    assert.ok(a.limits.timeout > 0 && a.limits.memory > 0, JSON.stringify(a.limits))
  })

  it('refuses to create it twice (409)', async () => {
    await rejects(createAction(name, hello()), 409, 'create twice')
  })

  it('invokes it blocking, result only', async () => {
    const res = await ow.actions.invoke({ name, params: { name: 'npm' }, blocking: true, result: true })
    assert.deepEqual(res, { greeting: 'Hello npm!' })
  })

  it('invokes it blocking, full activation', async () => {
    const act = await ow.actions.invoke({ name, blocking: true })
    assert.match(act.activationId, /^[0-9a-f]{32}$/)
    assert.equal(act.name, name)
    assert.equal(act.namespace, 'guest')
    assert.equal(act.response.success, true)
    assert.equal(act.response.status, 'success')
    assert.deepEqual(act.response.result, { greeting: 'Hello world!' })
    assert.ok(act.logs.some(l => l.endsWith('stderr: hello: greeting world')), JSON.stringify(act.logs))
    assert.ok(act.end >= act.start)
  })

  it('invokes it non-blocking', async () => {
    const res = await ow.actions.invoke({ name, params: { name: 'async' } })
    assert.match(res.activationId, /^[0-9a-f]{32}$/)
    assert.equal(Object.keys(res).length, 1, JSON.stringify(res))
    const act = await waitActivation(res.activationId)
    assert.deepEqual(act.response.result, { greeting: 'Hello async!' })
  })

  it('gets it', async () => {
    const a = await ow.actions.get({ name })
    assert.equal(a.name, name)
    assert.equal(a.version, '0.0.1')
    assert.equal(a.exec.kind, 'wasm')
    assert.ok(a.annotations.some(kv => kv.key === 'exec' && kv.value === 'wasm'), JSON.stringify(a.annotations))
    assert.deepEqual(a.parameters, [])
    // The client's string form and fully qualified names work too.
    assert.equal((await ow.actions.get(name)).name, name)
    assert.equal((await ow.actions.get({ name: `/guest/${name}` })).name, name)
    assert.equal((await ow.actions.get({ name: `/_/${name}` })).name, name)
  })

  it('lists it', async () => {
    const list = await ow.actions.list({ limit: 200 })
    assert.ok(Array.isArray(list))
    const mine = list.find(a => a.name === name)
    assert.ok(mine, `${name} not in ${list.map(a => a.name)}`)
    assert.equal(mine.version, '0.0.1')
    assert.equal(mine.namespace, 'guest')
    assert.equal((await ow.actions.list({ limit: 1 })).length, 1)
  })

  it('updates it: version 0.0.1 → 0.0.2, new code', async () => {
    const a = await ow.actions.update({ name, action: echo(), kind: 'wasm' })
    assert.equal(a.version, '0.0.2')
    assert.equal((await ow.actions.get({ name })).version, '0.0.2')
    const res = await ow.actions.invoke({ name, params: { x: 1 }, blocking: true, result: true })
    assert.deepEqual(res, { x: 1 })
  })

  it('updates its limits alone, keeping the code (0.0.3)', async () => {
    const a = await ow.actions.update({ name, limits: { timeout: 10000, memory: 256 } })
    assert.equal(a.version, '0.0.3')
    assert.equal(a.limits.timeout, 10000)
    assert.equal(a.limits.memory, 256)
    assert.deepEqual(await ow.actions.invoke({ name, params: { y: 2 }, blocking: true, result: true }), { y: 2 })
  })

  it('deletes it', async () => {
    const a = await ow.actions.delete({ name })
    assert.equal(a.name, name)
    await rejects(ow.actions.get({ name }), 404, 'get deleted')
    await rejects(ow.actions.invoke({ name, blocking: true }), 404, 'invoke deleted')
    await rejects(ow.actions.delete({ name }), 404, 'delete twice')
  })
})

describe('action parameters', () => {
  const name = unique('params')
  const fin = unique('final')
  after(() => cleanup(() => ow.actions.delete({ name }), () => ow.actions.delete({ name: fin })))

  it('creates an action with default parameters and shows them', async () => {
    const a = await createAction(name, echo(), { params: { a: 1, b: 'two' } })
    assert.deepEqual(a.parameters, [{ key: 'a', value: 1 }, { key: 'b', value: 'two' }])
    const got = await ow.actions.get({ name })
    assert.deepEqual(got.parameters, [{ key: 'a', value: 1 }, { key: 'b', value: 'two' }])
  })

  it('merges them under the invocation parameters', async () => {
    assert.deepEqual(await ow.actions.invoke({ name, blocking: true, result: true }), { a: 1, b: 'two' })
    assert.deepEqual(await ow.actions.invoke({ name, params: { b: 3, c: true }, blocking: true, result: true }),
      { a: 1, b: 3, c: true })
  })

  it('updates them', async () => {
    const a = await ow.actions.update({ name, params: { a: 'new' } })
    assert.deepEqual(a.parameters, [{ key: 'a', value: 'new' }])
    assert.deepEqual(await ow.actions.invoke({ name, blocking: true, result: true }), { a: 'new' })
  })

  it('refuses to override final parameters (400)', async () => {
    await createAction(fin, echo(), { params: { locked: 'yes' }, annotations: { final: true } })
    assert.deepEqual(await ow.actions.invoke({ name: fin, params: { other: 1 }, blocking: true, result: true }),
      { locked: 'yes', other: 1 })
    await rejects(ow.actions.invoke({ name: fin, params: { locked: 'no' }, blocking: true, result: true }), 400, 'override final')
  })
})
