#!/usr/bin/env bash
# The broker VM: mooring-broker serve with the lab's server certificate, the admin CA, the
# swtpm EK CA as the TPM manufacturer root, and a policy that admits nobody until a class
# is learned from a known-good client VM (README.md, step 2). It runs under the
# repository's unit (packaging/broker/mooring-broker.service), as the Debian package installs it:
# user mooring-broker, state in /var/lib/mooring-broker, configuration readable by its group.
set -euo pipefail

network="${MOORING_NETWORK:?}"
getent passwd mooring-broker >/dev/null \
  || useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin mooring-broker
install -d -m 0750 -g mooring-broker /etc/mooring /etc/mooring/tls /etc/mooring/ek-roots
install -m 0644 /mooring/tls/broker.pem /mooring/tls/admin-ca.pem /etc/mooring/tls/
install -m 0640 -g mooring-broker /mooring/tls/broker.key /etc/mooring/tls/
if compgen -G "/mooring/ek-roots/*.pem" >/dev/null; then
  install -m 0644 /mooring/ek-roots/*.pem /etc/mooring/ek-roots/
fi

cat >/etc/mooring/broker.toml <<TOML
listen = "0.0.0.0:8443"
data_dir = "/var/lib/mooring-broker"
trust_domain = "lab.mooring"
policy = "/etc/mooring/policy.toml"

[tls]
certificate = "/etc/mooring/tls/broker.pem"
private_key = "/etc/mooring/tls/broker.key"

[admin]
client_ca = "/etc/mooring/tls/admin-ca.pem"

[tpm]
ek_roots = ["/etc/mooring/ek-roots"]
TOML

# The class the walk-through learns is appended below this header; it stays on re-provision.
if [ ! -f /etc/mooring/policy.toml ]; then
  cat >/etc/mooring/policy.toml <<TOML
version = 1
# Lab VMs attest from ${network}.21 (client-a) and ${network}.22 (client-b). Learn the class
# from client-a's PCRs (README.md, step 2):
#   mooring-broker policy learn-tpm --class lab --pcrs /tmp/pcrs.json >> /etc/mooring/policy.toml
# then add to it:  networks = ["${network}.21/32", "${network}.22/32"]  and  audiences = ["payments"]
TOML
fi

chgrp mooring-broker /etc/mooring/broker.toml /etc/mooring/policy.toml
chmod 0640 /etc/mooring/broker.toml /etc/mooring/policy.toml

# The unit expects the binary in /usr/bin.
ln -sf /usr/local/bin/mooring-broker /usr/bin/mooring-broker
install -m 0644 /mooring/mooring-broker.service /etc/systemd/system/mooring-broker.service
systemctl daemon-reload
systemctl enable --now mooring-broker.service
systemctl restart mooring-broker.service
