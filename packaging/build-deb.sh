#!/bin/sh
# build-deb.sh ARCH BINARY VERSION OUTDIR: package a static mxedge binary as OUTDIR/mxedge_VERSION_ARCH.deb.
#
# Reproducible: every mtime is SOURCE_DATE_EPOCH (required), owners are root:root
# (--root-owner-group), modes are set explicitly, gzip runs with -n, and dpkg-deb takes the ar member
# dates from SOURCE_DATE_EPOCH too. The unit, snippets and default configuration are copied from
# install/, the one source `mxedge install` embeds.
# Man pages and shell completions are generated from the command tree (mxedge gen-man, mxedge
# completion) by DOCGEN, an mxedge binary of the same source that runs on this machine: BINARY
# itself unless it is cross-compiled.
# Environment: SOURCE_DATE_EPOCH (required), DOCGEN (default BINARY), DEB_MAINTAINER (default below).
set -eu

if [ $# -ne 4 ]; then
	echo "usage: $0 ARCH BINARY VERSION OUTDIR" >&2
	exit 2
fi
arch=$1 binary=$2 version=$3 out=$4
: "${SOURCE_DATE_EPOCH:?build-deb.sh: set SOURCE_DATE_EPOCH (the Makefile derives it from the last commit)}"
maintainer=${DEB_MAINTAINER:-mxedge maintainers <maintainers@mxedge.invalid>}
docgen=${DOCGEN:-$binary}

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
case $version in
[0-9]*) ;;
*) echo "build-deb.sh: Debian version must start with a digit: $version" >&2; exit 2 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
umask 022
pkg=$stage/mxedge

install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" "$pkg/usr/lib/sysusers.d" \
	"$pkg/usr/lib/tmpfiles.d" "$pkg/usr/share/doc/mxedge" "$pkg/usr/share/lintian/overrides" \
	"$pkg/usr/share/man/man1" "$pkg/usr/share/bash-completion/completions" \
	"$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d"
install -d -m 0750 "$pkg/etc/mxedge"
install -m 0755 "$binary" "$pkg/usr/bin/mxedge"
install -m 0644 "$top/install/mxedge.service" "$pkg/usr/lib/systemd/system/mxedge.service"
install -m 0644 "$top/install/mxedge.sysusers" "$pkg/usr/lib/sysusers.d/mxedge.conf"
install -m 0644 "$top/install/mxedge.tmpfiles" "$pkg/usr/lib/tmpfiles.d/mxedge.conf"
install -m 0640 "$top/install/mxedge.yaml" "$pkg/etc/mxedge/mxedge.yaml"
install -m 0644 "$here/debian/copyright" "$pkg/usr/share/doc/mxedge/copyright"
install -m 0644 "$top/docs/install.md" "$pkg/usr/share/doc/mxedge/install.md"
# The reference for every key and default the shipped configuration leaves out.
install -m 0644 "$top/docs/configuration.md" "$pkg/usr/share/doc/mxedge/configuration.md"
install -m 0644 "$here/lintian-overrides" "$pkg/usr/share/lintian/overrides/mxedge"

# Man pages (section 1, one per command) and completions, from the command tree that ships.
"$docgen" gen-man "$stage/man"
set -- "$stage"/man/*.1
if [ ! -f "$1" ]; then
	echo "build-deb.sh: $docgen gen-man wrote no man page" >&2
	exit 1
fi
for page in "$@"; do
	gzip -9n <"$page" >"$pkg/usr/share/man/man1/$(basename "$page").gz"
	chmod 0644 "$pkg/usr/share/man/man1/$(basename "$page").gz"
done
"$docgen" completion bash >"$pkg/usr/share/bash-completion/completions/mxedge"
"$docgen" completion zsh >"$pkg/usr/share/zsh/vendor-completions/_mxedge"
"$docgen" completion fish >"$pkg/usr/share/fish/vendor_completions.d/mxedge.fish"
chmod 0644 "$pkg/usr/share/bash-completion/completions/mxedge" "$pkg/usr/share/zsh/vendor-completions/_mxedge" \
	"$pkg/usr/share/fish/vendor_completions.d/mxedge.fish"

date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a, %d %b %Y %H:%M:%S +0000')
sed -e "s|@VERSION@|$version|g" -e "s|@MAINTAINER@|$maintainer|g" -e "s|@DATE@|$date|g" \
	"$here/debian/changelog.in" | gzip -9n >"$pkg/usr/share/doc/mxedge/changelog.Debian.gz"
chmod 0644 "$pkg/usr/share/doc/mxedge/changelog.Debian.gz"

for s in postinst prerm postrm; do
	install -m 0755 "$here/debian/$s" "$pkg/DEBIAN/$s"
done
install -m 0644 "$here/debian/conffiles" "$pkg/DEBIAN/conffiles"

# Installed-Size in KiB (Debian policy 5.6.20), from apparent sizes so the filesystem does not matter.
size=$(find "$pkg" -path "$pkg/DEBIAN" -prune -o -type f -printf '%s\n' | awk '{ s += int(($1 + 1023) / 1024) } END { print s }')
sed -e "s|@VERSION@|$version|g" -e "s|@ARCH@|$arch|g" -e "s|@MAINTAINER@|$maintainer|g" -e "s|@SIZE@|$size|g" \
	"$here/debian/control.in" >"$pkg/DEBIAN/control"
chmod 0644 "$pkg/DEBIAN/control"
# md5sums covers everything but conffiles (dpkg records those in its database itself).
(cd "$pkg" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb=$out/mxedge_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
