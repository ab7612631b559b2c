package store

// RedisDefaults is the Redis configuration when nothing is configured (the
// redis.* keys of cmd/stormguard): one local server, DefaultTimeout and
// DefaultPrefix, no WAIT for replicas (DefaultWaitTimeout should one be
// asked for).
func RedisDefaults() RedisConfig {
	return RedisConfig{Addrs: []string{"127.0.0.1:6379"}, Timeout: DefaultTimeout, Prefix: DefaultPrefix,
		WaitTimeout: DefaultWaitTimeout}
}
