// Error answers with the openwhisk npm client: 404, 401, 400, 403 and 409.
'use strict'

const { describe, it, after } = require('node:test')
const { assert, ow, client, other, otherNamespace, hello, unique, createAction, rejects, cleanup } = require('./helpers')

describe('errors', () => {
  const name = unique('err')
  after(() => cleanup(() => ow.actions.delete({ name })))

  it('404 for an unknown action', async () => {
    const err = await rejects(ow.actions.get({ name: unique('missing') }), 404, 'get')
    assert.equal(err.error.error, 'The requested resource does not exist.')
    assert.ok(err.error.code, 'error bodies carry a code')
    await rejects(ow.actions.invoke({ name: unique('missing'), blocking: true }), 404, 'invoke')
    await rejects(ow.actions.delete({ name: unique('missing') }), 404, 'delete')
  })

  it('401 for a bad key', async () => {
    const [uuid] = process.env.CLEMMYS_AUTH.split(':')
    await rejects(client(`${uuid}:not-the-key`).actions.list(), 401, 'wrong key')
    await rejects(client('no-such-uuid:key').namespaces.list(), 401, 'unknown uuid')
  })

  it('400 for bad action limits', async () => {
    await rejects(createAction(name, hello(), { limits: { timeout: 10 } }), 400, 'timeout 10 ms')
    await rejects(createAction(name, hello(), { limits: { memory: 100000 } }), 400, 'memory 100000 MB')
    await rejects(ow.actions.get({ name }), 404, 'nothing was created')
  })

  // OpenWhisk's list limit is 0 (= 200) to 200; anything else is refused.
  it('400 for a list limit above 200', async () => {
    await rejects(ow.activations.list({ limit: 500 }), 400, 'activations limit 500')
    await rejects(ow.actions.list({ limit: 201 }), 400, 'actions limit 201')
  })

  it('400 for a malformed limit or skip', async () => {
    await rejects(ow.activations.list({ limit: 'abc' }), 400, 'activations limit abc')
    await rejects(ow.activations.list({ skip: -1 }), 400, 'activations skip -1')
    await rejects(ow.actions.list({ limit: -5 }), 400, 'actions limit -5')
  })

  it('400 for code that is neither wasm nor valid JavaScript', async () => {
    await rejects(ow.actions.create({ name, action: 'function main( {', kind: 'nodejs:20' }), 400, 'javascript syntax error')
    await rejects(ow.actions.create({ name, action: 'def main(args): return args', kind: 'python:3' }), 400, 'python action')
    await rejects(createAction(name, Buffer.from('not a module')), 400, 'not a module')
  })

  it('403 for another namespace', async () => {
    await createAction(name, hello())
    await rejects(ow.actions.list({ namespace: otherNamespace() }), 403, 'list another namespace')
    await rejects(other().actions.get({ name: `/guest/${name}` }), 403, 'get another namespace\'s action')
    await rejects(other().actions.invoke({ name: `/guest/${name}`, blocking: true }), 403, 'invoke another namespace\'s action')
    await rejects(other().activations.list({ namespace: 'guest' }), 403, 'list another namespace\'s activations')
  })

  it('409 for an existing action', async () => {
    await rejects(createAction(name, hello()), 409, 'create twice')
  })
})
