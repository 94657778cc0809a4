// Package cluster benchmarks replication between edges (edge/cluster): how long a new edge takes
// to hold what the others hold (anti-entropy) and how many bytes that costs, for 10k and 100k
// cache entries across three edges, and the CPU one replicated update costs the cluster, against
// the CPU of the same update written to one edge's cache alone, measured in the same run.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/cluster/
//
// The three edges run in this process on loopback, each with its own bbolt cache (NoSync, so the
// figures are replication, not fsync).
package cluster
