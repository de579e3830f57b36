// Sequences with the openwhisk npm client: create (exec kind sequence),
// invoke, and their activation records.
'use strict'

const { describe, it, before, after } = require('node:test')
const { assert, ow, hello, echo, unique, createAction, rejects, waitActivation, cleanup } = require('./helpers')

describe('sequences', () => {
  const first = unique('seq-echo')
  const second = unique('seq-hello')
  const seq = unique('seq')
  before(async () => {
    await createAction(first, echo())
    await createAction(second, hello())
  })
  after(() => cleanup(
    () => ow.actions.delete({ name: seq }),
    () => ow.actions.delete({ name: first }),
    () => ow.actions.delete({ name: second })))

  it('creates a sequence from components', async () => {
    const a = await ow.actions.create({ name: seq, sequence: [`/_/${first}`, `/guest/${second}`] })
    assert.equal(a.name, seq)
    assert.equal(a.version, '0.0.1')
    assert.equal(a.exec.kind, 'sequence')
    assert.deepEqual(a.exec.components, [`/guest/${first}`, `/guest/${second}`])
    const got = await ow.actions.get({ name: seq })
    assert.equal(got.exec.kind, 'sequence')
    assert.ok(got.annotations.some(kv => kv.key === 'exec' && kv.value === 'sequence'), JSON.stringify(got.annotations))
  })

  it('refuses a sequence with a missing component (400)', async () => {
    await rejects(ow.actions.create({ name: unique('badseq'), sequence: [`/_/${first}`, '/_/does-not-exist'] }), 400, 'missing component')
  })

  it('invokes it: each output is the next input', async () => {
    const res = await ow.actions.invoke({ name: seq, params: { name: 'sequence' }, blocking: true, result: true })
    assert.deepEqual(res, { greeting: 'Hello sequence!' })
  })

  it('records the sequence and its components', async () => {
    const act = await ow.actions.invoke({ name: seq, params: { name: 'records' }, blocking: true })
    assert.equal(act.name, seq)
    assert.equal(act.response.success, true)
    assert.deepEqual(act.response.result, { greeting: 'Hello records!' })
    // A sequence's logs are its components' activation ids.
    assert.equal(act.logs.length, 2, JSON.stringify(act.logs))
    const names = []
    for (const id of act.logs) {
      assert.match(id, /^[0-9a-f]{32}$/)
      const c = await waitActivation(id)
      assert.equal(c.cause, act.activationId)
      assert.equal(c.response.success, true)
      names.push(c.name)
    }
    assert.deepEqual(names, [first, second])
    const last = await ow.activations.get({ activationId: act.logs[1] })
    assert.deepEqual(last.response.result, { greeting: 'Hello records!' })
    const firstLogs = await ow.activations.logs({ activationId: act.logs[0] })
    assert.ok(Array.isArray(firstLogs.logs))
  })

  it('is updated in place (0.0.2) and deleted', async () => {
    const a = await ow.actions.update({ name: seq, sequence: [`/_/${second}`] })
    assert.equal(a.version, '0.0.2')
    assert.deepEqual(await ow.actions.invoke({ name: seq, params: { name: 'one' }, blocking: true, result: true }), { greeting: 'Hello one!' })
    await ow.actions.delete({ name: seq })
    await rejects(ow.actions.get({ name: seq }), 404, 'deleted sequence')
  })
})
