#!/usr/bin/env bash
# Builds the .deb and the .rpm of hotbackup:
#   scripts/package.sh            -> target/debian/hotbackup_VERSION-1_ARCH.deb
#                                    target/generate-rpm/hotbackup-VERSION-1.ARCH.rpm
# Installs the pinned packagers when missing (cargo install --locked), builds the release
# binary, generates the man pages and shell completions from the CLI (hotbackup generate-docs),
# adds the failover scripts' pages (packaging/man8), compresses the man pages, then runs cargo-deb and cargo-generate-rpm (configured in
# Cargo.toml, [package.metadata.deb] and [package.metadata.generate-rpm]).
#   scripts/package.sh --deb      only the .deb (the system test's need)
set -euo pipefail
cd "$(dirname "$0")/.."
want_rpm=1
case "${1:-}" in
    --deb) want_rpm=0 ;;
    '') ;;
    *) echo "usage: scripts/package.sh [--deb]" >&2; exit 2 ;;
esac

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

need() { # need SUBCOMMAND CRATE VERSION
    if ! cargo "$1" --version 2>/dev/null | grep -qF "$3"; then
        echo "== installing $2 $3"
        cargo install --locked --quiet "$2" --version "=$3"
    fi
}
need deb cargo-deb "$CARGO_DEB_VERSION"
if [ "$want_rpm" = 1 ]; then
    need generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
fi

echo "== cargo build --release"
cargo build --locked --release --bin hotbackup
echo "== stripped binary, man pages and completions"
mkdir -p target/pkg
strip --strip-debug -o target/pkg/hotbackup target/release/hotbackup
rm -rf target/pkg/docs
target/pkg/hotbackup generate-docs target/pkg/docs >/dev/null
# The failover scripts' pages (section 8: /usr/sbin) are written by hand in packaging/man8.
mkdir -p target/pkg/docs/man8
cp packaging/man8/*.8 target/pkg/docs/man8/
gzip -9n target/pkg/docs/man1/*.1 target/pkg/docs/man8/*.8
echo "== .deb"
cargo deb --no-build --no-strip --quiet
ls -l target/debian/*.deb
if [ "$want_rpm" = 1 ]; then
    echo "== .rpm"
    cargo generate-rpm
    ls -l target/generate-rpm/*.rpm
fi
