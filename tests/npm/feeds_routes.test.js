// Feeds on /whisk.system/alarms, routes (the API management API) and GET of
// an action with its code, with the openwhisk npm client.
'use strict'

const { describe, it, after } = require('node:test')
const https = require('node:https')
const { assert, ow, unique, cleanup, waitFor, env } = require('./helpers')

function get (path) {
  return new Promise((resolve, reject) => {
    https.get(`${env('CLEMMYS_APIHOST')}${path}`, { rejectUnauthorized: false }, res => {
      let body = ''
      res.on('data', c => { body += c })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    }).on('error', reject)
  })
}

describe('alarm feeds', () => {
  const trigger = unique('alarm')
  const rule = unique('alarmrule')
  const fn = unique('alarmfn')
  after(() => cleanup(
    () => ow.rules.delete({ name: rule }),
    () => ow.actions.delete({ name: fn }),
    () => ow.feeds.delete({ name: '/whisk.system/alarms/alarm', trigger }),
    () => ow.triggers.delete({ name: trigger })))

  it('creates, reads, updates and deletes an alarm that fires its trigger', async () => {
    await ow.triggers.create({ name: trigger })
    await ow.actions.create({ name: fn, action: 'function main(p) { return p }' })
    await ow.rules.create({ name: rule, action: fn, trigger })
    await ow.feeds.create({ name: '/whisk.system/alarms/alarm', trigger, params: { cron: '* * * * * *', trigger_payload: { from: 'npm' } } })
    const read = await ow.feeds.get({ name: '/whisk.system/alarms/alarm', trigger })
    assert.equal(read.response.result.config.cron, '* * * * * *')
    assert.equal(read.response.result.status.active, true)
    await waitFor(async () => (await ow.activations.list({ name: trigger })).length > 0, 'the alarm to fire')
    await ow.feeds.update({ name: '/whisk.system/alarms/alarm', trigger, params: { cron: '*/2 * * * * *' } })
    const updated = await ow.feeds.get({ name: '/whisk.system/alarms/alarm', trigger })
    assert.equal(updated.response.result.config.cron, '*/2 * * * * *')
    await ow.feeds.delete({ name: '/whisk.system/alarms/alarm', trigger })
    await assert.rejects(ow.feeds.get({ name: '/whisk.system/alarms/alarm', trigger }))
  })

  it('lists the alarms package among whisk.system public packages', async () => {
    if (env('CLEMMYS_CATALOG') !== 'installed') return
    const pkgs = await ow.packages.list({ namespace: 'whisk.system' })
    assert.ok(pkgs.some(p => p.name === 'alarms'), JSON.stringify(pkgs))
    const alarms = await ow.packages.get({ name: '/whisk.system/alarms' })
    assert.deepEqual(alarms.feeds.map(f => f.name).sort(), ['alarm', 'interval', 'once'])
  })
})

describe('routes', () => {
  const action = unique('route')
  const base = '/' + unique('api')
  after(() => cleanup(() => ow.routes.delete({ basepath: base }), () => ow.actions.delete({ name: action })))

  it('creates, serves, gets and deletes a route to a web action', async () => {
    await ow.actions.create({ name: action, action: { exec: { kind: 'nodejs:default', code: 'function main(p) { return { hello: p.name } }' }, annotations: [{ key: 'web-export', value: true }] } })
    const created = await ow.routes.create({ relpath: '/hello', operation: 'GET', action, basepath: base })
    assert.ok(created.value.gwApiUrl.endsWith('/api/guest' + base))
    const res = await get(`/api/guest${base}/hello?name=route`)
    assert.equal(res.status, 200)
    assert.equal(JSON.parse(res.body).hello, 'route')
    const got = await ow.routes.get({ basepath: base })
    assert.equal(got.apis.length, 1)
    assert.ok(got.apis[0].value.apidoc.paths['/hello'].get)
    await ow.routes.delete({ basepath: base })
    assert.equal((await get(`/api/guest${base}/hello`)).status, 404)
  })
})

describe('get with code', () => {
  const name = unique('code')
  after(() => cleanup(() => ow.actions.delete({ name })))
  it('returns exec.code to the owner, not with code=false', async () => {
    const src = 'function main() { return { ok: true } }'
    await ow.actions.create({ name, action: src })
    assert.equal((await ow.actions.get({ name })).exec.code, src)
    assert.equal((await ow.actions.get({ name, code: true })).exec.code, src)
    assert.equal((await ow.actions.get({ name, code: false })).exec.code, undefined)
  })
})
