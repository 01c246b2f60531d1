# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh.
# install_or_explain PACKAGE...: installs the missing Debian packages when run as root, or
# prints the apt-get line and exits 2.
install_or_explain() {
  (($# == 0)) && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" </dev/null >/dev/null
  else
    echo "missing Debian packages: $*" >&2
    echo "install them with:  sudo apt-get install $*" >&2
    exit 2
  fi
}
