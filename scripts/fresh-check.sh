#!/usr/bin/env bash
# The new user's machine, from nothing: a minimal Debian 12 root (mmdebstrap --variant=minbase),
# a clone of this repository's HEAD with nothing beside it, and the README's commands run inside
# it as root. Catches what a green CI on a long-lived machine hides: a package installed by
# hand, a test reading files outside the repository, a path of the build machine.
#
#   scripts/fresh-check.sh            (as root; `make fresh-check`)
#   FRESH_CHECK_CACHE=DIR             where the base tarball is kept between runs
#   FRESH_CHECK_KEEP=1                keep the root afterwards (its path is printed)
#
# Only committed work is checked (it clones HEAD). Exits non-zero naming the step that failed.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${FRESH_CHECK_CACHE:-/var/cache/ckv-fresh-check}"
TARBALL="$CACHE/bookworm-minbase.tar"
START=$(date +%s)
ROOT=""
MOUNTS=()

step() { echo "== fresh-check: $*"; }
fail() {
  echo "== fresh-check FAILED at: $1 (after $(($(date +%s) - START)) s)" >&2
  exit 1
}

cleanup() {
  local i
  # Unmount in reverse order, on every exit path; lazily if something still holds a mount.
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  if [[ -n "$ROOT" && -d "$ROOT" ]]; then
    if [[ "${FRESH_CHECK_KEEP:-0}" == 1 ]]; then
      echo "== fresh-check: root kept at $ROOT"
    elif ! grep -q " $ROOT/" /proc/mounts; then
      rm -rf --one-file-system "$ROOT"
    else
      echo "== fresh-check: $ROOT still has mounts; not removed" >&2
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) -eq 0 ]] || fail "must run as root (chroot, mounts)"
command -v mmdebstrap >/dev/null || {
  step "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap \
    >/dev/null || fail "apt-get install mmdebstrap"
}

if [[ ! -s "$TARBALL" ]]; then
  step "creating the minimal Debian 12 root ($TARBALL)"
  mkdir -p "$CACHE"
  mmdebstrap --variant=minbase --quiet \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    bookworm "$CACHE/partial.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" || fail "mmdebstrap"
  mv "$CACHE/partial.tar" "$TARBALL"
else
  step "reusing $TARBALL"
fi

ROOT="$(mktemp -d /var/tmp/ckv-fresh-XXXXXX)"
step "unpacking into $ROOT"
tar -xf "$TARBALL" -C "$ROOT" || fail "unpacking the base root"
# The network this machine has, not the project's dependencies: its resolver, and the CAs it
# trusts (a workplace may reach package registries through a TLS-inspecting proxy; Node, which
# fetches the OpenAI client from npm, takes extra CAs from NODE_EXTRA_CA_CERTS).
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
EXTRA_CA=""
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/host-ca-bundle.crt"
  EXTRA_CA="NODE_EXTRA_CA_CERTS=/etc/host-ca-bundle.crt"
fi

step "cloning HEAD ($(git -C "$REPO" rev-parse --short HEAD)) with nothing beside it"
git clone --quiet --no-local "$REPO" "$ROOT/src/contiguouskv" || fail "git clone"
[[ ! -e "$ROOT/src/shared" ]] || fail "something lies beside the clone"

for m in proc sys dev; do
  mount --rbind "/$m" "$ROOT/$m" || fail "mounting /$m"
  mount --make-rslave "$ROOT/$m" 2>/dev/null || true
  MOUNTS+=("$ROOT/$m")
done

# The README's commands, as a new user types them (see README.md, top).
run_in_root() {
  local what="$1"
  shift
  step "$what"
  local t0=$(date +%s)
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 $EXTRA_CA /bin/bash -c "cd /src/contiguouskv && $*" || fail "$what"
  echo "== fresh-check: '$what' passed in $(($(date +%s) - t0)) s"
}
run_in_root "scripts/install-deps.sh" "scripts/install-deps.sh"
run_in_root "make demo" "make demo"
run_in_root "make test" "make test"

echo "== fresh-check PASSED in $(($(date +%s) - START)) s"
