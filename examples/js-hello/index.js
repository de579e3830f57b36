// js-hello: a zipped, multi-file JavaScript action, written as for
// OpenWhisk's nodejs kinds and deployed unchanged (see README.md):
//
//   cd examples/js-hello && zip -r ../../js-hello.zip package.json index.js lib
//   clemmys action create js-hello js-hello.zip
//   clemmys action invoke js-hello -p name Ada -p lang fr -r
//
// It requires its own files (lib/), awaits a timer, logs with console.log
// and console.error, reads the __OW_* environment values, and fails with
// an application error (a rejected promise) for a language it does not
// know.
const { greet, languages } = require('./lib/greeting');

async function main(params) {
  const name = params.name || 'world';
  const lang = params.lang || 'en';
  console.log(`js-hello: greeting ${name} in ${lang}`);
  if (!languages.includes(lang)) {
    console.error(`js-hello: no greeting in ${lang}`);
    // A thrown error in an async function is a rejected promise: the
    // activation is an application error {"error": "..."}.
    throw new Error(`unknown language "${lang}": try one of ${languages.join(', ')}`);
  }
  const greeting = await greet(name, lang);
  return {
    greeting,
    action: process.env.__OW_ACTION_NAME,
    activation: process.env.__OW_ACTIVATION_ID,
  };
}

exports.main = main;
