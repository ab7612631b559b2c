package store_test

import (
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store/storetest"
)

// BenchmarkRedisDecisions measures Record (one decision's store call, with
// its links and its shard of the thread index) from parallel goroutines
// against one Redis master and against a three-master Cluster, side by
// side, in decisions per second (docs/performance.md).
//
//	STORMGUARD_REQUIRE_SERVERS=1 go test ./store -run '^$' -bench RedisDecisions -benchtime 20000x
func BenchmarkRedisDecisions(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		addr := redisenv.Start(b)
		s := openRedis(b, addr, false)
		defer s.Close()
		storetest.BenchRecord(b, s)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("cluster3", func(b *testing.B) {
		addr := redisenv.StartClusterOf(b, 3)[0]
		s := openRedis(b, addr, true)
		defer s.Close()
		storetest.BenchRecord(b, s)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}
