# workerd configuration for running bench/workerd/worker.js (the
# equivalent of examples/hello) by hand, over plain HTTP:
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT
# `clemmys bench --scenarios workerd` does not use this file: it writes an
# HTTPS configuration of the same worker with a fresh self-signed
# certificate into its work dir (internal/bench/compare.go), so that both
# sides of the comparison pay for TLS.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "hello", worker = .helloWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "hello") ],
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-01-01",
);
