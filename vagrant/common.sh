#!/usr/bin/env bash
# Every VM: the lab's host names, the packages the binaries and the walk-through use, and
# the staged binaries (synced to /mooring by the Vagrantfile).
set -euo pipefail

if ! grep -q "mooring lab" /etc/hosts; then
  {
    echo "# mooring lab"
    echo "${MOORING_HOSTS:?}"
  } >>/etc/hosts
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates curl jq openssl tpm2-tools tpm2-openssl

install -m 0755 /mooring/bin/* /usr/local/bin/
install -d -m 0755 /etc/mooring
install -m 0644 /mooring/tls/lab-ca.pem /etc/mooring/lab-ca.pem
