// Runs the action with node, as OpenWhisk's nodejs runtime would:
// npm test (or node test.js).
const assert = require('node:assert');
const { main } = require('./index.js');

(async () => {
  assert.strictEqual((await main({ name: 'Ada', lang: 'fr' })).greeting, 'Bonjour Ada !');
  assert.strictEqual((await main({})).greeting, 'Hello world!');
  await assert.rejects(main({ lang: 'xx' }), /unknown language "xx"/);
  console.log('ok');
})();
