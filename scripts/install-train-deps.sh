#!/bin/sh
# Debian packages the model trainer (tools/train/) needs; not needed to build or test.
set -e
pkgs="python3-torch libopenblas0-pthread python3-sentencepiece python3-numpy python3-matplotlib bible-kjv"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
