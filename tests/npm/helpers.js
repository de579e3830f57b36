// Shared helpers of the openwhisk npm client suite. The suite runs against
// a clemmys that internal/platform/npm_test.go starts; it passes:
//
//   CLEMMYS_APIHOST        https://127.0.0.1:PORT
//   CLEMMYS_AUTH           the guest credential "uuid:key"
//   CLEMMYS_NAMESPACE      the guest namespace name
//   CLEMMYS_OTHER_AUTH     a credential of a second namespace
//   CLEMMYS_OTHER_NAMESPACE
//   CLEMMYS_HELLO_WASM     path of examples/hello built for wasip1
//   CLEMMYS_ECHO_WASM      path of internal/testfuncs/echo built for wasip1
//   CLEMMYS_CATALOG        "installed" when /whisk.system/utils is installed
//
// Test files run in parallel processes against the same namespace, so
// every test names its entities with unique() and filters by name.
'use strict'

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const openwhisk = require('openwhisk')

function env (name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set: run the suite with go test ./internal/platform -run NPM`)
  return v
}

// client returns an openwhisk client for the guest namespace (or the other
// one, or any api_key).
function client (auth = env('CLEMMYS_AUTH')) {
  return openwhisk({ apihost: env('CLEMMYS_APIHOST'), api_key: auth, ignore_certs: true })
}

const ow = client()
const other = () => client(env('CLEMMYS_OTHER_AUTH'))
const namespace = () => env('CLEMMYS_NAMESPACE')
const otherNamespace = () => env('CLEMMYS_OTHER_NAMESPACE')

let wasmCache = {}
function wasm (which) {
  const key = which === 'hello' ? 'CLEMMYS_HELLO_WASM' : 'CLEMMYS_ECHO_WASM'
  if (!wasmCache[which]) wasmCache[which] = fs.readFileSync(env(key))
  return wasmCache[which]
}
const hello = () => wasm('hello')
const echo = () => wasm('echo')

// unique returns a fresh entity name.
function unique (prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`
}

// createAction deploys a wasm action with the npm client's usual options.
function createAction (name, code, extra = {}) {
  return ow.actions.create(Object.assign({ name, action: code, kind: 'wasm' }, extra))
}

// rejects asserts that promise fails with HTTP status.
async function rejects (promise, status, what = '') {
  let result
  try {
    result = await promise
  } catch (err) {
    assert.equal(err.statusCode, status, `${what}: expected HTTP ${status}, got ${err.statusCode}: ${err.message}`)
    return err
  }
  assert.fail(`${what}: expected HTTP ${status}, the call succeeded: ${JSON.stringify(result)}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// waitActivation polls an activation until it is recorded (404 while it
// runs).
async function waitActivation (id, c = ow, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await c.activations.get({ activationId: id })
    } catch (err) {
      if (err.statusCode !== 404 || Date.now() > deadline) throw err
    }
    await sleep(100)
  }
}

// waitFor polls fn until it returns a truthy value.
async function waitFor (fn, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(200)
  }
}

// cleanup deletes entities, ignoring errors (for after hooks).
async function cleanup (...calls) {
  for (const c of calls) {
    try { await c() } catch (_) {}
  }
}

module.exports = { assert, ow, client, other, namespace, otherNamespace, hello, echo, unique, createAction, rejects, sleep, waitActivation, waitFor, cleanup, env }
