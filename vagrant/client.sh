#!/usr/bin/env bash
# A client VM: mooring-client (the repository's unit, packaging/client/mooring-client.service, as
# the Debian package installs it: user mooring-client in group tss) against the lab broker,
# from this VM's lab address, with the emulated TPM at /dev/tpmrm0. It is enabled but not
# started: the broker admits nobody until the walk-through has learned the lab class.
set -euo pipefail

address="${MOORING_IP:?}"
getent group tss >/dev/null || groupadd --system tss
getent passwd mooring-client >/dev/null \
  || useradd --system --user-group --groups tss --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin mooring-client
cat >/etc/mooring/client.toml <<TOML
broker_url = "https://broker:8443"
broker_ca = "/etc/mooring/lab-ca.pem"
runtime_dir = "/run/mooring"
state_dir = "/var/lib/mooring"
source_address = "${address}"

[evidence]
kind = "tpm"
tcti = "device:/dev/tpmrm0"
ek = "rsa2048"
# The unit's root helper copies the firmware log here (securityfs is root's alone).
event_log = "/run/mooring-client/event-log"
TOML
chgrp mooring-client /etc/mooring/client.toml
chmod 0640 /etc/mooring/client.toml

# The unit file expects the binary in /usr/bin.
ln -sf /usr/local/bin/mooring-client /usr/bin/mooring-client
install -m 0644 /mooring/mooring-client.service /etc/systemd/system/mooring-client.service
systemctl daemon-reload
systemctl enable mooring-client.service

if [ ! -e /dev/tpmrm0 ]; then
  echo "warning: no /dev/tpmrm0: is the libvirt TPM emulator (swtpm) configured?" >&2
fi
