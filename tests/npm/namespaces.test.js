// Namespaces with the openwhisk npm client.
'use strict'

const { describe, it } = require('node:test')
const { assert, ow, other, otherNamespace } = require('./helpers')

describe('namespaces', () => {
  it('lists the caller\'s namespace', async () => {
    assert.deepEqual(await ow.namespaces.list(), ['guest'])
    assert.deepEqual(await other().namespaces.list(), [otherNamespace()])
  })

  it('gets the entities of the namespace', async () => {
    const ns = await ow.namespaces.get()
    for (const k of ['actions', 'packages', 'triggers', 'rules']) {
      assert.ok(Array.isArray(ns[k]), `${k}: ${JSON.stringify(ns[k])}`)
    }
  })
})
