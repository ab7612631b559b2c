// Package config is stormguard's configuration: Config declares every key
// once, as a tagged field, and everything else is derived from the tags —
// viper's defaults, the STORMGUARD_* environment variables, serve's flags,
// the check listing, the reference in docs/configuration.md and the test
// of deploy/stormguard.yaml — and Load maps the keys into the plain configs
// the packages take (milter.Config, store.RedisConfig, events.Config,
// admin.Config), validated by their own Validate.
//
// It is the one place viper is used; the packages it feeds must not import
// it or viper. It must not decide policy, open stores or connections, or
// start anything: it reads files and the environment, and returns values
// and one-line errors naming the key at fault.
//
// After a change to a key's tags, rewrite docs/configuration.md with
//
//	go test ./cmd/stormguard/internal/config -run TestConfigReference -update
package config
