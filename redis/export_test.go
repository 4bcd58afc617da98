package redis

// RedisKey exposes the Redis key of key, for tests that look inside Redis.
func (l *Limiter) RedisKey(key string) string { return l.redisKey(key) }
