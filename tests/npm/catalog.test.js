// The whisk.system catalog (/whisk.system/utils), used from the guest
// namespace as in OpenWhisk's documentation.
'use strict'

const { describe, it, before, after } = require('node:test')
const { assert, ow, unique, cleanup } = require('./helpers')

const utils = '/whisk.system/utils'

describe('whisk.system catalog', () => {
  before(() => {
    assert.equal(process.env.CLEMMYS_CATALOG, 'installed', 'the catalog was not installed at start (see the platform log in the go test output)')
  })

  it('is a public package with the utils actions', async () => {
    const p = await ow.packages.get({ name: utils })
    assert.equal(p.name, 'utils')
    assert.equal(p.namespace, 'whisk.system')
    assert.equal(p.publish, true)
    const names = p.actions.map(a => a.name).sort()
    for (const n of ['cat', 'date', 'echo', 'head', 'smash', 'sort', 'split']) {
      assert.ok(names.includes(n), `${n} not in ${names}`)
    }
  })

  const run = (name, params) => ow.actions.invoke({ name: `${utils}/${name}`, params, blocking: true, result: true })

  it('echo', async () => {
    assert.deepEqual(await run('echo', { payload: 'Five fuzzy felines' }), { payload: 'Five fuzzy felines' })
  })

  it('cat, sort, split, head, smash, date', async () => {
    assert.deepEqual(await run('cat', { lines: [4, 2, 3] }), { lines: [4, 2, 3], payload: '4\n2\n3' })
    assert.deepEqual(await run('sort', { lines: ['b', 'c', 'a'] }), { lines: ['a', 'b', 'c'], length: 3 })
    assert.deepEqual(await run('split', { payload: 'one,two,three', separator: ',' }), { lines: ['one', 'two', 'three'], payload: 'one,two,three' })
    assert.deepEqual(await run('head', { lines: [4, 2, 3], num: 2 }), { lines: [4, 2], num: 2 })
    assert.deepEqual(await run('smash', { a: 1, $fieldName: 'x' }), { x: { a: 1 } })
    const { date } = await run('date', {})
    assert.ok(Math.abs(Date.parse(date) - Date.now()) < 60000, date)
  })

  describe('in a sequence of the user', () => {
    const seq = unique('catalog-seq')
    after(() => cleanup(() => ow.actions.delete({ name: seq })))

    it('split | sort (the OpenWhisk documentation\'s example)', async () => {
      await ow.actions.create({ name: seq, sequence: [`${utils}/split`, `${utils}/sort`] })
      const res = await ow.actions.invoke({ name: seq, params: { payload: 'Over-ripe sushi,\nThe Master\nIs full of regret.' }, blocking: true, result: true })
      assert.deepEqual(res, { length: 3, lines: ['Is full of regret.', 'Over-ripe sushi,', 'The Master'] })
    })
  })

  it('cannot be changed by users', async () => {
    await assert.rejects(ow.actions.delete({ name: `${utils}/echo` }), err => err.statusCode === 403)
  })
})
