#!/usr/bin/env bash
# Builds the Debian package: ./scripts/build-deb.sh [OUTDIR] (default dist/)
# writes OUTDIR/stormguard_VERSION_ARCH.deb and prints its path.
#
# The version comes from git: the last tag vX.Y.Z gives X.Y.Z, or
# X.Y.Z+gitN.HASH N commits after it; with no tag 0.0.0+gitN.HASH, N the
# number of commits, so a later commit's package upgrades an earlier one.
# ".dirty" is added when the tree has changes. STORMGUARD_DEB_VERSION
# overrides it (the package tests build a lower one to upgrade from).
#
# The binary is a static PIE (CGO_ENABLED=0, -buildmode=pie: no C library,
# address space randomisation), built with -trimpath and the version,
# commit and build date (the commit's time) linked in (stormguard version
# prints them), so two builds of one commit give the same package; the
# man pages with
# cobra's doc generator from a second build with -tags mandoc; the
# completions by the binary itself. nfpm, pinned in tools/pkg/go.mod (a
# module of its own, so its dependencies stay out of stormguard's),
# assembles the package from packaging/nfpm.yaml.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

fail() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || fail "go not found in PATH"
command -v git >/dev/null || fail "git not found in PATH"
git rev-parse --git-dir >/dev/null 2>&1 || fail "not a git checkout: the version comes from git"

commit=$(git rev-parse HEAD)
short=$(git rev-parse --short=12 HEAD)
dirty=
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
	dirty=.dirty
fi
if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 2>/dev/null); then
	n=$(git rev-list --count "$tag..HEAD")
	version=${tag#v}
	if ((n > 0)) || [[ -n $dirty ]]; then
		version+="+git$n.$short$dirty"
	fi
else
	version="0.0.0+git$(git rev-list --count HEAD).$short$dirty"
fi
version=${STORMGUARD_DEB_VERSION:-$version}
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || fail "not a Debian version: $version"

# The commit's time, so two builds of one commit give the same files.
epoch=$(git show -s --format=%ct HEAD)
date=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
arch=$(go env GOARCH)

stage=$(mktemp -d "${TMPDIR:-/tmp}/stormguard-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/man" "$stage/completions"

ldflags="-s -w -X main.version=$version -X main.commit=$commit$dirty -X main.buildDate=$date"
CGO_ENABLED=0 go build -trimpath -buildvcs=false -buildmode=pie -ldflags "$ldflags" -o "$stage/stormguard" ./cmd/stormguard
CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags mandoc -ldflags "$ldflags" -o "$stage/mandoc" ./cmd/stormguard
"$stage/mandoc" __man "$stage/man"
rm "$stage/mandoc"
gzip -9n "$stage"/man/*.1
for sh in bash zsh fish; do
	"$stage/stormguard" completion "$sh" >"$stage/completions/$sh"
done
mv "$stage/completions/bash" "$stage/completions/stormguard.bash"
mv "$stage/completions/zsh" "$stage/completions/_stormguard"
mv "$stage/completions/fish" "$stage/completions/stormguard.fish"

# The unit of deploy/, with the packaged binary's path.
sed 's|/usr/local/bin/stormguard|/usr/bin/stormguard|' deploy/stormguard.service >"$stage/stormguard.service"
grep -q '^ExecStart=/usr/bin/stormguard ' "$stage/stormguard.service" || fail "deploy/stormguard.service: no ExecStart=/usr/local/bin/stormguard line"

# A native package's changelog: one entry for this build.
{
	printf 'stormguard (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from commit %s%s.\n\n' "$commit" "$dirty"
	printf ' -- stormguard maintainers <stormguard@example.org>  %s\n' "$(date -u -R -d "@$epoch")"
} >"$stage/changelog"
gzip -9n "$stage/changelog"
touch -d "@$epoch" "$stage"/* "$stage"/man/* "$stage"/completions/*

cp deploy/stormguard.yaml packaging/copyright packaging/postinst packaging/prerm packaging/postrm "$stage/"

deb="$out/stormguard_${version}_$arch.deb"
rm -f "$deb"
tools=$(mktemp -d "${TMPDIR:-/tmp}/stormguard-nfpm.XXXXXX")
trap 'rm -rf "$stage" "$tools"' EXIT
(cd tools/pkg && go build -o "$tools/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)
config=$PWD/packaging/nfpm.yaml
(cd "$stage" && DEB_VERSION=$version DEB_ARCH=$arch SOURCE_DATE_EPOCH=$epoch \
	"$tools/nfpm" package --config "$config" --packager deb --target "$deb" >&2)
echo "$deb"
