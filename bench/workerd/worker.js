// The JavaScript equivalent of examples/hello for the workerd side of
// `clemmys bench`: a JSON POST {"name": "..."} answers
// {"greeting": "Hello <name>!"} ("world" when name is missing, as hello does).
export default {
  async fetch(request) {
    let params = {};
    if (request.method === "POST") {
      try {
        params = await request.json();
      } catch {
        params = {};
      }
    }
    const name = typeof params?.name === "string" && params.name !== "" ? params.name : "world";
    return Response.json({ greeting: "Hello " + name + "!" });
  },
};
