// Package mgmt owns mxedge's management plane: the client of the small versioned HTTPS API
// (/api/v1, documented in docs/api/) that any controller can implement, the one-time registration
// flow behind `mxedge register` (key, CSR, code → certificate, CA bundle, configuration, regfile,
// written all or nothing), and the Syncer the daemon runs to pull configuration and the cache
// snapshot every 30 minutes and to renew its client certificate before it expires.
//
// The package knows nothing of the configuration format or the cache: the daemon passes Validate,
// Apply and MergeCache functions (consumer-defined seams), so a cloud outage or a bad document never
// reaches the request path. It imports only mxedge/pki.
package mgmt
