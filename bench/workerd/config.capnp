# workerd configuration for `clemmys bench --scenarios workerd`: one
# service running worker.js (the equivalent of examples/hello), served over
# plain HTTP. The bench overrides the address with
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "hello", worker = .helloWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "hello") ],
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-01-01",
);
