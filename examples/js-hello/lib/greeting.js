// The greetings, from a JSON file of the zip.
const greetings = require('./greetings.json');

exports.languages = Object.keys(greetings);

// greet resolves to the greeting a little later: timers run within the
// activation.
exports.greet = (name, lang) =>
  new Promise((resolve) => setTimeout(() => resolve(greetings[lang].replace('NAME', name)), 1));
