// Triggers and rules with the openwhisk npm client: create, fire, the
// activations a rule causes, disable/enable, delete.
'use strict'

const { describe, it, before, after } = require('node:test')
const { assert, ow, hello, unique, createAction, rejects, waitActivation, waitFor, sleep, cleanup } = require('./helpers')

describe('triggers and rules', () => {
  const action = unique('rule-hello')
  const trigger = unique('trig')
  const rule = unique('rule')
  before(() => createAction(action, hello()))
  after(() => cleanup(
    () => ow.rules.delete({ name: rule }),
    () => ow.triggers.delete({ name: trigger }),
    () => ow.actions.delete({ name: action })))

  // fire fires the trigger and returns the activation the rule caused.
  async function fire (params) {
    const res = await ow.triggers.invoke(params ? { name: trigger, params } : { name: trigger })
    assert.match(res && res.activationId, /^[0-9a-f]{32}$/, `fire answered ${JSON.stringify(res)}`)
    const trig = await waitActivation(res.activationId)
    assert.equal(trig.name, trigger)
    // A trigger activation's logs are one JSON line per rule it fired.
    assert.equal(trig.logs.length, 1, JSON.stringify(trig.logs))
    const line = JSON.parse(trig.logs[0])
    assert.equal(line.rule, `guest/${rule}`)
    assert.equal(line.action, `guest/${action}`)
    assert.equal(line.success, true, trig.logs[0])
    const act = await waitActivation(line.activationId)
    assert.equal(act.name, action)
    // OpenWhisk ≥ 2018 fires rules through its own REST API and does not
    // always set the cause; when set, it is the trigger activation.
    if (act.cause !== undefined) assert.equal(act.cause, res.activationId)
    return act
  }

  it('creates a trigger with parameters', async () => {
    const t = await ow.triggers.create({ name: trigger, trigger: { parameters: [{ key: 'name', value: 'trigger' }] } })
    assert.equal(t.name, trigger)
    assert.equal(t.namespace, 'guest')
    assert.equal(t.version, '0.0.1')
    assert.deepEqual(t.parameters, [{ key: 'name', value: 'trigger' }])
    await rejects(ow.triggers.create({ name: trigger }), 409, 'create trigger twice')
    assert.ok((await ow.triggers.list()).some(x => x.name === trigger))
  })

  it('fires a trigger without rules: 204, no activation', async () => {
    const res = await ow.triggers.invoke({ name: trigger })
    assert.ok(!res || !res.activationId, `fire without rules answered ${JSON.stringify(res)}`)
  })

  it('creates an active rule', async () => {
    const r = await ow.rules.create({ name: rule, action, trigger })
    assert.equal(r.name, rule)
    assert.equal(r.status, 'active')
    assert.deepEqual(r.trigger, { name: trigger, path: 'guest' })
    assert.deepEqual(r.action, { name: action, path: 'guest' })
    const got = await ow.rules.get({ name: rule })
    assert.equal(got.status, 'active')
    assert.ok((await ow.rules.list()).some(x => x.name === rule))
    const t = await ow.triggers.get({ name: trigger })
    assert.deepEqual(t.rules[`guest/${rule}`], { action: { name: action, path: 'guest' }, status: 'active' })
  })

  it('fires: the rule invokes the action with the trigger parameters', async () => {
    const act = await fire()
    assert.deepEqual(act.response.result, { greeting: 'Hello trigger!' })
    const act2 = await fire({ name: 'fired' })
    assert.deepEqual(act2.response.result, { greeting: 'Hello fired!' })
  })

  it('disables the rule: firing answers 204 and activates nothing', async () => {
    await ow.rules.disable({ name: rule })
    assert.equal((await ow.rules.get({ name: rule })).status, 'inactive')
    const before = (await ow.activations.list({ name: action, count: true })).activations
    const res = await ow.triggers.invoke({ name: trigger, params: { name: 'disabled' } })
    assert.ok(!res || !res.activationId, `fire with a disabled rule answered ${JSON.stringify(res)}`)
    await sleep(1500)
    assert.equal((await ow.activations.list({ name: action, count: true })).activations, before)
  })

  it('enables it again', async () => {
    await ow.rules.enable({ name: rule })
    assert.equal((await ow.rules.get({ name: rule })).status, 'active')
    const act = await fire({ name: 'again' })
    assert.deepEqual(act.response.result, { greeting: 'Hello again!' })
    await waitFor(async () => (await ow.activations.list({ name: action })).length === 3, 'three action activations')
  })

  it('deletes the rule and the trigger', async () => {
    const r = await ow.rules.delete({ name: rule })
    assert.equal(r.name, rule)
    await rejects(ow.rules.get({ name: rule }), 404, 'deleted rule')
    const t = await ow.triggers.delete({ name: trigger })
    assert.equal(t.name, trigger)
    await rejects(ow.triggers.get({ name: trigger }), 404, 'deleted trigger')
    await rejects(ow.triggers.invoke({ name: trigger }), 404, 'fire a deleted trigger')
  })
})
