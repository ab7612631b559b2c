// A Redis ACL user restricted to what the stormguard daemon needs.

package redisenv

import (
	"strings"
	"testing"
)

// ACLRules are the ACL rules of the user stormguard connects as: its
// keys and its event channel only, and only the commands the daemon sends
// (directly, inside record.lua, and while connecting: HELLO and SELECT;
// the Cluster client's CLUSTER SLOTS/SHARDS and COMMAND). store.OpenRedis
// sends no CLIENT SETINFO. They start with -@all so that nothing else is allowed. The
// docs show them; paste them after "user stormguard on >PASSWORD" in
// users.acl, or after "ACL SETUSER stormguard on >PASSWORD".
const ACLRules = "resetkeys ~stormguard:* resetchannels &stormguard:* -@all " +
	"+ping +hello +select +command +cluster|slots +cluster|shards " +
	"+evalsha +eval +script|load +multi +exec +publish +wait " +
	"+get +set +del +exists +pttl +pexpire " +
	"+hget +hgetall +hset +hsetnx +hdel +hincrby " +
	"+smembers +sadd +srem +hscan +sscan +zadd +zrange +zremrangebyscore " +
	"+pexpireat +rpush +ltrim +lrange +zremrangebyrank"

// ACLUser and ACLPassword are the user AddACLUser creates.
const (
	ACLUser     = "stormguard"
	ACLPassword = "test-only-password"
)

// ACLLine is the users.acl line for user with password and ACLRules.
func ACLLine(user, password string) string {
	return "user " + user + " on >" + password + " " + ACLRules
}

// AddACLUser creates ACLUser with ACLPassword and ACLRules
// on the server at addr (through its default user, which stays as it is
// for the test's own redis-cli calls).
func AddACLUser(t testing.TB, addr string) {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", ACLUser, "reset", "on", ">" + ACLPassword},
		strings.Fields(ACLRules)...)
	CLI(t, addr, args...)
}

// CLIAs runs redis-cli as user, for tests that expect the ACL to
// allow or refuse a command; it returns the output and the error reply.
func CLIAs(addr, user, password string, args ...string) (string, error) {
	return CLIErr(addr, append([]string{"--user", user, "--pass", password, "--no-auth-warning"}, args...)...)
}
