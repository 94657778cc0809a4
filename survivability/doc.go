// Package survivability owns what keeps users on the network when the cloud NAC is unreachable: it
// learns every upstream authorization into the client cache (Learner, a proxy.Observer), classifies
// requests by method (MAB, EAP-TLS, password), and turns cached attributes back into RADIUS replies.
// The local decision engine and the accounting spool build on these.
package survivability
