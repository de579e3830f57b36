// js-web: a web action that serves an HTML form and renders what is
// posted to it. Deploy it as a web action and open its address:
//
//   clemmys action create js-web examples/js-web/index.js --web true
//   clemmys action get js-web --url    # https://HOST/api/v1/web/NS/default/js-web
//
// A web action answers HTTP without credentials. Its parameters carry the
// request (__ow_method, __ow_headers, __ow_path, and the query's and the
// form's fields); its result is the response, {statusCode, headers, body}
// (the .http extension, the default).

const page = (title, content) => `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${title}</title></head>
<body>
<h1>${title}</h1>
${content}
</body>
</html>
`;

// escape makes text safe inside HTML.
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function form(message) {
  // An empty action posts back to this address.
  return `${message ? `<p role="status">${message}</p>` : ''}
<form method="post" action="">
  <label for="name">Your name</label>
  <input id="name" name="name" required maxlength="100">
  <label for="color">Favourite colour</label>
  <select id="color" name="color">
    <option>green</option><option>blue</option><option>orange</option>
  </select>
  <button type="submit">Send</button>
</form>`;
}

function main(params) {
  const html = (statusCode, body) => ({
    statusCode,
    headers: { 'Content-Type': 'text/html; charset=utf-8' },
    body,
  });
  switch (params.__ow_method) {
    case 'get':
      return html(200, page('Hello from clemmys', form('')));
    case 'post': {
      const name = (params.name || '').trim();
      if (!name) {
        return html(400, page('Hello from clemmys', form('Please give your name.')));
      }
      console.log(`js-web: form posted (colour ${params.color})`);
      const color = ['green', 'blue', 'orange'].includes(params.color) ? params.color : 'green';
      return html(200, page('Hello from clemmys',
        `<p>Hello <strong>${escape(name)}</strong>, your colour is <span style="color:${color}">${color}</span>.</p>
<p><a href="">Again</a></p>`));
    }
    default:
      return { statusCode: 405, headers: { Allow: 'GET, POST' }, body: '' };
  }
}

exports.main = main;
