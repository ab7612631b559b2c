// Package identity measures what thread identity costs per message, for
// two revisions of stormguard side by side (../identity.sh BEFORE AFTER):
//
//   - Redis round trips per message class, on one node of two sharing a
//     standalone Redis or a three-master Cluster: a Proxy between the
//     daemons and each redis-server parses the protocol and records every
//     round trip (Trip) with the process that made it, so the count comes
//     from outside the daemon and holds for any revision;
//   - the p99 at end of headers that each revision adds over the no-op
//     milter (../noop) at a storm-shaped load (Mix), the revisions and the
//     no-op interleaved round by round on the same machine.
//
// The harness is TestIdentityCost; the real daemons (`stormguard serve`
// built from each revision) run as child processes on their own Redis.
// Without STORMGUARD_BENCH_IDENTITY=1 the test runs in smoke mode (this
// tree's binary on both sides, short), as in CI.
package identity
