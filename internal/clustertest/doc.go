// Package clustertest holds the multi-process test of a clemmys deployment:
// a three-node NATS cluster (nats-server built from the module clemmys
// depends on, with the least-privilege configuration `clemmys nats-config`
// writes) and every service as a separate OS process — two KMS replicas,
// two controllers, two invokers, two gateways — which it then attacks with
// kill -9. It has no code of its own: it is the test of the deployment
// docs/operations.md describes.
package clustertest
