// Packages with the openwhisk npm client: create, publish, actions in
// packages, package parameters, listing, sharing, delete with force.
'use strict'

const { describe, it, after } = require('node:test')
const { assert, ow, other, hello, unique, createAction, rejects, cleanup } = require('./helpers')

describe('packages', () => {
  const pkg = unique('pkg')
  const priv = unique('private')
  after(() => cleanup(
    () => ow.actions.delete({ name: `${pkg}/hello` }),
    () => ow.packages.delete({ name: pkg, qs: { force: true } }),
    () => ow.actions.delete({ name: `${priv}/hello` }),
    () => ow.packages.delete({ name: priv, qs: { force: true } })))

  it('creates a public package', async () => {
    const p = await ow.packages.create({
      name: pkg,
      package: { publish: true, parameters: [{ key: 'name', value: 'package' }], annotations: [{ key: 'description', value: 'npm suite' }] }
    })
    assert.equal(p.name, pkg)
    assert.equal(p.namespace, 'guest')
    assert.equal(p.publish, true)
    assert.equal(p.version, '0.0.1')
    assert.deepEqual(p.parameters, [{ key: 'name', value: 'package' }])
    await rejects(ow.packages.create({ name: pkg, package: {} }), 409, 'create package twice')
  })

  it('holds actions', async () => {
    const a = await createAction(`${pkg}/hello`, hello())
    assert.equal(a.name, 'hello')
    assert.equal(a.namespace, `guest/${pkg}`)
    const got = await ow.actions.get({ name: `${pkg}/hello` })
    assert.equal(got.namespace, `guest/${pkg}`)
  })

  it('invokes an action in a package, with the package parameters', async () => {
    assert.deepEqual(await ow.actions.invoke({ name: `${pkg}/hello`, blocking: true, result: true }), { greeting: 'Hello package!' })
    assert.deepEqual(await ow.actions.invoke({ name: `${pkg}/hello`, params: { name: 'caller' }, blocking: true, result: true }),
      { greeting: 'Hello caller!' })
  })

  it('gets the package with its actions', async () => {
    const p = await ow.packages.get({ name: pkg })
    assert.equal(p.name, pkg)
    assert.equal(p.publish, true)
    assert.ok(Array.isArray(p.actions), JSON.stringify(p))
    assert.deepEqual(p.actions.map(a => a.name), ['hello'])
    assert.ok(p.annotations.some(kv => kv.key === 'description' && kv.value === 'npm suite'))
  })

  it('lists packages and the actions of a package', async () => {
    const list = await ow.packages.list({ limit: 200 })
    assert.ok(list.some(p => p.name === pkg && p.publish === true), JSON.stringify(list.map(p => p.name)))
    // As in OpenWhisk, the namespace's action list includes the actions of
    // its packages (namespace "guest/<package>").
    const top = await ow.actions.list({ limit: 200 })
    assert.ok(top.some(a => a.name === 'hello' && a.namespace === `guest/${pkg}`), JSON.stringify(top.map(a => `${a.namespace}/${a.name}`)))
  })

  it('updates a package (0.0.2)', async () => {
    const p = await ow.packages.update({ name: pkg, package: { publish: true, parameters: [{ key: 'name', value: 'updated' }] } })
    assert.equal(p.version, '0.0.2')
    assert.deepEqual(await ow.actions.invoke({ name: `${pkg}/hello`, blocking: true, result: true }), { greeting: 'Hello updated!' })
  })

  it('shares a public package with other namespaces, not a private one', async () => {
    await ow.packages.create({ name: priv, package: { publish: false } })
    await createAction(`${priv}/hello`, hello())
    const o = other()
    const shared = await o.packages.get({ name: `/guest/${pkg}` })
    assert.equal(shared.name, pkg)
    assert.deepEqual(await o.actions.invoke({ name: `/guest/${pkg}/hello`, params: { name: 'neighbour' }, blocking: true, result: true }),
      { greeting: 'Hello neighbour!' })
    await rejects(o.packages.get({ name: `/guest/${priv}` }), 403, 'private package of another namespace')
    await rejects(o.actions.invoke({ name: `/guest/${priv}/hello`, blocking: true }), 403, 'action of a private package')
    // Another namespace cannot change a shared package.
    await rejects(o.actions.create({ name: `/guest/${pkg}/intruder`, action: hello(), kind: 'wasm' }), 403, 'write to a shared package')
  })

  it('refuses to delete a package with actions, unless forced', async () => {
    await rejects(ow.packages.delete({ name: pkg }), 409, 'delete non-empty package')
    const p = await ow.packages.delete({ name: pkg, qs: { force: true } })
    assert.equal(p.name, pkg)
    await rejects(ow.packages.get({ name: pkg }), 404, 'deleted package')
    await rejects(ow.actions.get({ name: `${pkg}/hello` }), 404, 'action of a deleted package')
  })

  it('answers 404 for an unknown package', async () => {
    await rejects(ow.packages.get({ name: unique('nopkg') }), 404, 'unknown package')
    await rejects(ow.actions.invoke({ name: `${unique('nopkg')}/hello`, blocking: true }), 404, 'action of an unknown package')
  })
})
