#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fetches a Debian 11 (bullseye) package such as consul or consulfs into a
# per-user cache, without touching the system's apt state, and prints the path
# of its binary.
#
# Usage: tests/fetch-consul.sh [PACKAGE]     (PACKAGE defaults to "consul")
#
# stdout: exactly one line, the absolute path of usr/bin/PACKAGE inside
#         ${CFGFS_CACHE:-$HOME/.cache/cfgfs}/PACKAGE/<version>/.
# stderr: progress and, on failure, one line starting with "fetch-consul:".
#
# Debian 12 ships no consul, but bullseye (Debian 11) ships consul 1.8.x in
# the same archive that the system's apt sources already name. We add the
# bullseye suite only for this one download, through a private apt
# configuration in a temporary directory, so /etc/apt and /var/lib/apt stay
# exactly as they were and no root is needed.

set -euo pipefail

PROG=fetch-consul
# Debian's main archive key ring; it carries the bullseye signing keys too.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUITE=bullseye

die() {
	echo "$PROG: $*" >&2
	exit 1
}

# Prints the binary of $1 below the cache directory $2, if one is complete.
# A version directory only appears by rename once fully extracted, so
# existence is proof of completeness. If several versions are cached the
# highest wins.
cached_binary() {
	local pkg=$1 dir=$2 path
	local -a found
	shopt -s nullglob
	found=("$dir"/*/usr/bin/"$pkg" "$dir"/*/usr/sbin/"$pkg")
	shopt -u nullglob
	[[ ${#found[@]} -gt 0 ]] || return 1
	path=$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)
	[[ -x $path ]] || return 1
	printf '%s\n' "$path"
}

# Prints the URI of the entry in the system's apt sources that serves this
# release's main suite (e.g. "bookworm", not "bookworm-security"). Asking apt
# itself covers sources.list, *.list and deb822 *.sources alike;
# --no-release-info makes it work before any "apt-get update".
archive_uri() {
	local codename
	# shellcheck disable=SC1091 # the file exists on every Debian system
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || return 1
	# shellcheck disable=SC2016 # $(...) are apt format fields, not shell
	apt-get indextargets --no-release-info \
		--format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' |
		awk -v s="$codename" '$1 == "deb" && $2 == s { print $3; exit }'
}

pkg=${1:-consul}
[[ $# -le 1 ]] || die "usage: $0 [PACKAGE]"
# The name becomes a path component and an apt argument; keep it to Debian's
# package name syntax.
[[ $pkg =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "invalid package name: $pkg"

if [[ -z ${CFGFS_CACHE:-} && -z ${HOME:-} ]]; then
	die "neither CFGFS_CACHE nor HOME is set"
fi
cache=${CFGFS_CACHE:-$HOME/.cache/cfgfs}
mkdir -p "$cache" || die "cannot create cache directory $cache"
cache=$(cd "$cache" && pwd -P)
pkgcache=$cache/$pkg

# Fast path: no network, no apt, once the package has been fetched.
if cached_binary "$pkg" "$pkgcache"; then
	exit 0
fi

for tool in apt-get dpkg dpkg-deb; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian system needed)"
done
[[ -r $KEYRING ]] || die "cannot read $KEYRING (install debian-archive-keyring)"

uri=$(archive_uri) || true
[[ -n $uri ]] || die "cannot find the Debian archive URI in apt sources"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt running as root drops to the _apt user for downloads; that user must be
# able to reach the private lists and cache below, and the directory the .deb
# lands in.
chmod 0755 "$tmp"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" \
	"$tmp/prefs" "$tmp/deb"
if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then
	chown _apt "$tmp/deb"
fi

arch=$(dpkg --print-architecture)
# One suite, one component, the native architecture and only the Packages
# index: the smallest download that lets apt find the package.
echo "deb [arch=$arch target=Packages signed-by=$KEYRING] $uri $SUITE main" \
	>"$tmp/sources.list"

# Read after the system's apt.conf.d, so it wins. Proxy and other Acquire
# settings of the system still apply; everything apt would write, and the
# system's sources and pins, are replaced by private ones. The update hooks
# (PackageKit, AppStream) would announce a system cache change that did not
# happen, so they are cleared.
cat >"$tmp/apt.conf" <<EOF
Dir::Etc::SourceList "$tmp/sources.list";
Dir::Etc::SourceParts "$tmp/parts";
Dir::Etc::Preferences "$tmp/prefs/none";
Dir::Etc::PreferencesParts "$tmp/prefs";
Dir::State::Lists "$tmp/lists";
Dir::Cache "$tmp/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Get::List-Cleanup "0";
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
EOF
apt=(-q -c "$tmp/apt.conf")

echo "$PROG: reading $SUITE from $uri" >&2
apt-get "${apt[@]}" update >&2 ||
	die "apt-get update of $SUITE from $uri failed"

version=$(apt-cache "${apt[@]}" show --no-all-versions "$pkg" 2>/dev/null |
	sed -n 's/^Version: //p' | head -n 1) || true
[[ -n $version ]] || die "package $pkg not found in $SUITE at $uri"

echo "$PROG: downloading $pkg $version" >&2
(cd "$tmp/deb" && apt-get "${apt[@]}" download "$pkg=$version" >&2) ||
	die "apt-get download $pkg=$version failed"
deb=$(printf '%s\n' "$tmp"/deb/*.deb | head -n 1)
[[ -f $deb ]] || die "apt-get download left no .deb for $pkg"

# Extract next to the final place, then rename: an interrupted or concurrent
# run never leaves a half-filled version directory that the fast path would
# trust. An epoch's ':' is not wanted in a path.
vdir=$pkgcache/${version//:/_}
mkdir -p "$pkgcache" || die "cannot create cache directory $pkgcache"
stage=$(mktemp -d "$pkgcache/.stage.XXXXXX")
trap 'rm -rf "$tmp" "$stage"' EXIT
dpkg-deb -x "$deb" "$stage" || die "dpkg-deb -x $deb failed"
chmod 0755 "$stage"
[[ -x $stage/usr/bin/$pkg || -x $stage/usr/sbin/$pkg ]] ||
	die "package $pkg $version has no usr/bin/$pkg"
# mv -T refuses to replace a non-empty directory: if another run won the
# race, its copy is as good as ours.
mv -T "$stage" "$vdir" 2>/dev/null || [[ -d $vdir ]] ||
	die "cannot move the extracted package to $vdir"

cached_binary "$pkg" "$pkgcache" || die "no usable $pkg binary in $vdir"
