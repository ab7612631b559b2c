#!/usr/bin/env bash
# stormguard's one test command: ./scripts/test.sh [go test flags/packages]
#
# Installs the servers the tests need when missing (as root, on Debian/Ubuntu),
# then runs gofmt, go vet and go test -race. The tests start their own
# private Redis and Postfix instances in temporary directories on free
# loopback ports; this script starts, stops and configures no system service.
# The LDAP tests run Debian's slapd (installed with no configuration, so no
# system directory is set up or started) from their own slapd.conf.
# The Sendmail tests run Debian's Sendmail from its packages, which this
# script downloads (apt-get download) and unpacks (dpkg -x) once into
# /var/cache/stormguard-test/sendmail/root (or $XDG_CACHE_HOME/stormguard-test/
# sendmail/root), never installed (sendmail conflicts with postfix); the
# tests read them there and fetch nothing.
#
# The Debian package's test (packaging/) builds the .deb, installs it with
# dpkg -i, runs the unit's command line itself and purges the package,
# leaving nothing behind; it needs root and a host where systemd is not
# PID 1 (where it is, the package's postinst would start the service).
# The prometheus package is installed for promtool only; where systemd
# runs, Debian's package also starts a Prometheus server on :9090.
#
# STORMGUARD_REQUIRE_SERVERS=1 is exported: a test that cannot start a server
# fails instead of being skipped, so this command never passes by skipping.
#
# ./scripts/test.sh --setup installs and unpacks what the tests need, and
# stops there. Other arguments go to go test, e.g.:
#   ./scripts/test.sh -run TestPostfix ./internal/testenv/...
set -euo pipefail

setup_only=0
if [[ ${1-} == --setup ]]; then
	setup_only=1
	shift
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Postfix and redis tools live in sbin on Debian; a non-login root shell may
# not have it in PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

step "checking tools"
command -v go >/dev/null 2>&1 || fail "go not found in PATH (Go $(sed -n 's/^go //p' go.mod) or newer is required; see https://go.dev/dl/)"

# command -> Debian package
declare -A pkg_of=(
	[redis-server]=redis-server
	[redis-cli]=redis-tools
	[postfix]=postfix
	[postconf]=postfix
	[smtp-source]=postfix
	[smtp-sink]=postfix
	[openssl]=openssl
	[unshare]=util-linux
	[mount]=mount
	[hostname]=hostname
	[slapd]=slapd
	[slapadd]=slapd
	[ldapsearch]=ldap-utils
	[chromium]=chromium
	[saslpasswd2]=sasl2-bin
	[miltertest]=miltertest
	[notmuch]=notmuch
	[lintian]=lintian
	[promtool]=prometheus
	[systemd-analyze]=systemd
	[dpkg-deb]=dpkg
	[deb-systemd-helper]=init-system-helpers
	[setpriv]=util-linux
)
missing_pkgs=()
for cmd in redis-server redis-cli postfix postconf smtp-source smtp-sink openssl unshare mount hostname slapd slapadd ldapsearch chromium saslpasswd2 miltertest notmuch lintian promtool systemd-analyze dpkg-deb deb-systemd-helper setpriv; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "missing: $cmd (package ${pkg_of[$cmd]})"
		case " ${missing_pkgs[*]-} " in
		*" ${pkg_of[$cmd]} "*) ;;
		*) missing_pkgs+=("${pkg_of[$cmd]}") ;;
		esac
	fi
done

if ((${#missing_pkgs[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		fail "missing packages: ${missing_pkgs[*]}
Install them as root, e.g.:
  echo 'postfix postfix/main_mailer_type select No configuration' | sudo debconf-set-selections
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing_pkgs[*]}
(The Postfix tests also need to run as root; chromium is Debian's headless
browser for the report page's test; sasl2-bin gives the test Postfix SMTP
AUTH through Cyrus SASL and a private sasldb; lintian, systemd and dpkg check
and install the Debian package, prometheus gives promtool for the alert
rules' tests.)"
	fi
	command -v apt-get >/dev/null 2>&1 || fail "missing packages: ${missing_pkgs[*]}, and no apt-get to install them"
	step "installing ${missing_pkgs[*]}"
	apt-get update
	# "No configuration": the package installs Postfix without configuring or
	# starting a system mail server. The tests run private instances.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	# slapd: no configuration, no directory, no system server; the tests
	# run their own from a slapd.conf (internal/testenv/slapdenv).
	echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools postfix openssl util-linux mount hostname slapd ldap-utils chromium sasl2-bin libsasl2-modules miltertest notmuch lintian prometheus systemd dpkg init-system-helpers
	for cmd in "${!pkg_of[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || fail "$cmd still missing after installing ${pkg_of[$cmd]}"
	done
fi
# Sendmail, unpacked for the tests (internal/testenv/sendmailenv reads the
# same directory): .complete is written last, so a half-done unpack is never
# taken for a whole one.
sendmail_pkgs=(sendmail-bin sendmail-cf sendmail-base m4)
sendmail_cache=/var/cache/stormguard-test/sendmail
if [[ -n ${XDG_CACHE_HOME-} ]]; then
	sendmail_cache=$XDG_CACHE_HOME/stormguard-test/sendmail
fi
if [[ ! -e $sendmail_cache/root/.complete ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "warning: not root: ${sendmail_pkgs[*]} are not unpacked in $sendmail_cache/root; the Sendmail tests will fail (run ./scripts/test.sh --setup as root)" >&2
	else
		step "unpacking ${sendmail_pkgs[*]} into $sendmail_cache/root (never installed)"
		command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 ||
			fail "the Sendmail tests need Debian's apt-get and dpkg to fetch and unpack ${sendmail_pkgs[*]}"
		mkdir -p "$sendmail_cache/debs"
		exec 9>"$sendmail_cache/.lock"
		flock 9 # another run of this script unpacking at the same time
		if [[ ! -e $sendmail_cache/root/.complete ]]; then
			apt-cache show "${sendmail_pkgs[@]}" >/dev/null 2>&1 || apt-get update
			rm -f "$sendmail_cache"/debs/*.deb
			(cd "$sendmail_cache/debs" && apt-get download "${sendmail_pkgs[@]}") ||
				fail "apt-get download ${sendmail_pkgs[*]} in $sendmail_cache/debs (check apt's sources and the network)"
			tmp=$(mktemp -d "$sendmail_cache/unpack-XXXXXX")
			trap 'rm -rf "$tmp"' EXIT
			debs=()
			for pkg in "${sendmail_pkgs[@]}"; do
				deb=("$sendmail_cache/debs/${pkg}"_*.deb)
				[[ ${#deb[@]} -eq 1 && -e ${deb[0]} ]] || fail "want one ${pkg}_*.deb in $sendmail_cache/debs, have: ${deb[*]}"
				dpkg -x "${deb[0]}" "$tmp" || fail "dpkg -x ${deb[0]}"
				debs+=("${deb[0]}")
			done
			for need in usr/libexec/sendmail/sendmail usr/share/sendmail/cf/m4/cf.m4 usr/bin/m4; do
				[[ -e $tmp/$need ]] || fail "the unpacked packages lack $need"
			done
			printf '%s\n' "${debs[@]}" >"$tmp/.complete"
			rm -rf "$sendmail_cache/root"
			mv "$tmp" "$sendmail_cache/root"
			trap - EXIT
		fi
		exec 9>&-
		echo ok
	fi
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "warning: not root; the Postfix and Sendmail tests will fail (they start private servers as root)" >&2
fi
if ((setup_only)); then
	printf '\nPASS: setup done; ./scripts/test.sh runs the tests\n'
	exit 0
fi
go version

export STORMGUARD_REQUIRE_SERVERS=1

step "gofmt"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [[ -n $unformatted ]]; then
	printf '%s\n' "$unformatted"
	fail "gofmt: the files above need formatting (gofmt -w)"
fi
echo ok

step "go vet ./..."
go vet ./... || fail "go vet"
echo ok

step "go test -race -count=1 ${*:-./...}"
args=("$@")
# Default to all packages unless the caller named some (an argument that
# is not a flag and not a flag's value is taken as a package pattern).
has_pkg=0
prev_flag_needs_value=0
for a in "${args[@]+"${args[@]}"}"; do
	if ((prev_flag_needs_value)); then
		prev_flag_needs_value=0
		continue
	fi
	case "$a" in
	-*=*) ;;
	-run | -skip | -timeout | -count | -parallel | -bench | -benchtime | -cpu | -p | -tags | -coverprofile | -covermode | -coverpkg | -cpuprofile | -memprofile | -o | -exec | -shuffle | -fuzz | -fuzztime | -list)
		prev_flag_needs_value=1 ;;
	-*) ;;
	*) has_pkg=1 ;;
	esac
done
if ((has_pkg)); then
	go test -race -count=1 "${args[@]}" || fail "go test"
else
	go test -race -count=1 "${args[@]+"${args[@]}"}" ./... || fail "go test"
fi

# Benchmarks in smoke mode (one iteration each) so they cannot rot; the
# full runs are the documented commands in docs/performance.md, "Reproduce".
if ((has_pkg == 0)); then
	step "benchmarks, smoke mode (-benchtime=1x)"
	go test -run '^$' -bench . -benchtime 1x ./... >/tmp/stormguard-bench-smoke.$$ 2>&1 || {
		cat /tmp/stormguard-bench-smoke.$$
		rm -f /tmp/stormguard-bench-smoke.$$
		fail "benchmarks (smoke)"
	}
	grep -c '^Benchmark' /tmp/stormguard-bench-smoke.$$ | sed 's/$/ benchmarks ran/'
	rm -f /tmp/stormguard-bench-smoke.$$
fi

printf '\nPASS: gofmt, go vet, go test -race and the benchmark smoke run all passed\n'
