// Activations with the openwhisk npm client: list and its filters (name,
// limit, skip, since, upto, count, docs), get, result, logs.
'use strict'

const { describe, it, before, after } = require('node:test')
const { assert, ow, echo, unique, createAction, rejects, waitActivation, sleep, cleanup } = require('./helpers')

describe('activations', () => {
  const name = unique('acts')
  const ids = [] // oldest first
  let since, between
  before(async () => {
    await createAction(name, echo())
    since = Date.now() - 1
    for (let i = 0; i < 3; i++) {
      const { activationId } = await ow.actions.invoke({ name, params: { i, log: `line ${i}` } })
      ids.push(activationId)
      await waitActivation(activationId)
      if (i === 0) {
        await sleep(20)
        between = Date.now()
        await sleep(20)
      }
    }
  })
  after(() => cleanup(() => ow.actions.delete({ name })))

  it('lists them by name, newest first', async () => {
    const list = await ow.activations.list({ name })
    assert.deepEqual(list.map(a => a.activationId), [...ids].reverse())
    for (const a of list) {
      assert.equal(a.name, name)
      assert.equal(a.namespace, 'guest')
      assert.equal(a.statusCode, 0)
      assert.equal(a.response, undefined, 'no docs: no response')
    }
  })

  it('pages with limit and skip', async () => {
    assert.deepEqual((await ow.activations.list({ name, limit: 2 })).map(a => a.activationId), [ids[2], ids[1]])
    assert.deepEqual((await ow.activations.list({ name, limit: 1, skip: 1 })).map(a => a.activationId), [ids[1]])
    assert.deepEqual(await ow.activations.list({ name, skip: 3 }), [])
  })

  it('filters by since and upto', async () => {
    assert.deepEqual((await ow.activations.list({ name, since })).map(a => a.activationId), [ids[2], ids[1], ids[0]])
    assert.deepEqual((await ow.activations.list({ name, since: between })).map(a => a.activationId), [ids[2], ids[1]])
    assert.deepEqual((await ow.activations.list({ name, upto: between })).map(a => a.activationId), [ids[0]])
    assert.deepEqual(await ow.activations.list({ name, since: Date.now() + 60000 }), [])
  })

  it('counts them', async () => {
    assert.deepEqual(await ow.activations.list({ name, count: true }), { activations: 3 })
    assert.deepEqual(await ow.activations.list({ name, count: true, since: between }), { activations: 2 })
  })

  it('lists full records with docs', async () => {
    const list = await ow.activations.list({ name, docs: true, limit: 1 })
    assert.equal(list.length, 1)
    assert.deepEqual(list[0].response.result, { i: 2, log: 'line 2' })
    assert.ok(Array.isArray(list[0].logs))
  })

  it('gets one', async () => {
    const a = await ow.activations.get({ activationId: ids[0] })
    assert.equal(a.activationId, ids[0])
    assert.equal(a.name, name)
    assert.equal(a.subject, 'guest')
    assert.equal(a.response.success, true)
    assert.deepEqual(a.response.result, { i: 0, log: 'line 0' })
    assert.ok(a.logs.some(l => l.endsWith('stderr: line 0')), JSON.stringify(a.logs))
    assert.ok(a.duration >= 0 && a.end >= a.start)
    // The client's other ways to name it.
    assert.equal((await ow.activations.get(ids[0])).activationId, ids[0])
    assert.equal((await ow.activations.get({ name: ids[0] })).activationId, ids[0])
  })

  it('gets its result', async () => {
    const r = await ow.activations.result({ activationId: ids[1] })
    assert.equal(r.success, true)
    assert.equal(r.status, 'success')
    assert.deepEqual(r.result, { i: 1, log: 'line 1' })
  })

  it('gets its logs', async () => {
    const l = await ow.activations.logs({ activationId: ids[2] })
    assert.equal(l.logs.length, 1, JSON.stringify(l))
    assert.match(l.logs[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s+stderr: line 2$/)
  })

  it('answers 404 for an unknown activation', async () => {
    await rejects(ow.activations.get({ activationId: '0123456789abcdef0123456789abcdef' }), 404, 'unknown id')
    await rejects(ow.activations.result({ activationId: 'not-an-id' }), 404, 'malformed id')
  })
})
