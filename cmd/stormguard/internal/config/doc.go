// Package config is stormguard's configuration. keys.go declares every key
// once — its name, its meaning and the field of Config it sets — and the
// rest ranges over that table: reading the file (strictly: an unknown key
// or a value of the wrong kind is an error naming the key and its line),
// the STORMGUARD_* environment variables, serve's flags, the check listing,
// the reference in docs/configuration.md and the test of
// deploy/stormguard.yaml. Config.plain is how each section reaches the
// configs the packages take (milter.Config, store.RedisConfig,
// events.Config, admin.Config, …), validated by their own Validate.
//
// The packages it feeds must not import it. It must not decide policy,
// open stores or connections, or start anything: it reads files and the
// environment, and returns values and one-line errors naming the key at
// fault.
//
// After a change to a key or a limit rule, rewrite docs/configuration.md
// and the limits of deploy/stormguard.yaml with
//
//	go test ./cmd/stormguard/internal/config -update
package config
