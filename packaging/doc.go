// Package packaging tests what an administrator installs and runs beside
// the binary: the Debian package that scripts/build-deb.sh builds from
// this directory's nfpm recipe and maintainer scripts (lintian, install,
// the unit's own command line as the stormguard user, a storm over the
// milter protocol, upgrade, remove, purge), and the Prometheus rules and
// Grafana dashboard in deploy/ against the metrics the daemon exports.
//
// It holds tests only; no stormguard code imports it.
package packaging
