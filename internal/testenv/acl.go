// A Redis ACL user restricted to what the stormguard daemon needs.

package testenv

import (
	"strings"
	"testing"
)

// RedisACLRules are the ACL rules of the user stormguard connects as: its
// keys and its event channel only, and only the commands the daemon sends
// (directly, inside record.lua, and while connecting: HELLO and SELECT;
// the Cluster client's CLUSTER SLOTS/SHARDS and COMMAND). store.OpenRedis
// sends no CLIENT SETINFO. They start with -@all so that nothing else is allowed. The
// docs show them; paste them after "user stormguard on >PASSWORD" in
// users.acl, or after "ACL SETUSER stormguard on >PASSWORD".
const RedisACLRules = "resetkeys ~stormguard:* resetchannels &stormguard:* -@all " +
	"+ping +hello +select +command +cluster|slots +cluster|shards " +
	"+evalsha +eval +script|load +multi +exec +publish " +
	"+get +set +del +exists +pttl +pexpire " +
	"+hget +hgetall +hset +hsetnx +hdel +hincrby " +
	"+smembers +sadd +srem +hscan +sscan +zadd +zrange +zremrangebyscore " +
	"+pexpireat +rpush +ltrim +lrange +zremrangebyrank"

// RedisACLUser and RedisACLPassword are the user AddACLUser creates.
const (
	RedisACLUser     = "stormguard"
	RedisACLPassword = "test-only-password"
)

// ACLLine is the users.acl line for user with password and RedisACLRules.
func ACLLine(user, password string) string {
	return "user " + user + " on >" + password + " " + RedisACLRules
}

// AddACLUser creates RedisACLUser with RedisACLPassword and RedisACLRules
// on the server at addr (through its default user, which stays as it is
// for the test's own redis-cli calls).
func AddACLUser(t testing.TB, addr string) {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", RedisACLUser, "reset", "on", ">" + RedisACLPassword},
		strings.Fields(RedisACLRules)...)
	RedisCLI(t, addr, args...)
}

// RedisCLIAs runs redis-cli as user, for tests that expect the ACL to
// allow or refuse a command; it returns the output and the error reply.
func RedisCLIAs(addr, user, password string, args ...string) (string, error) {
	return RedisCLIErr(addr, append([]string{"--user", user, "--pass", password, "--no-auth-warning"}, args...)...)
}
