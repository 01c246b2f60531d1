#!/usr/bin/env bash
# The payment service VM: mooring-payments with the lab certificate, trusting the broker
# (pinned to the lab CA), checking callers offline with revocation lists every 10 s.
# `MOORING_PAYMENTS_MODE=broker vagrant provision payments` switches to the verify API.
set -euo pipefail

mode="${MOORING_PAYMENTS_MODE:-offline}"
install -d -m 0700 /etc/mooring/tls
install -m 0644 /mooring/tls/payments.pem /etc/mooring/tls/
install -m 0600 /mooring/tls/payments.key /etc/mooring/tls/

cat >/etc/mooring/payments.toml <<TOML
listen = "0.0.0.0:9443"
audience = "payments"
mode = "${mode}"

[tls]
source = "files"
certificate = "/etc/mooring/tls/payments.pem"
private_key = "/run/credentials/mooring-payments.service/payments.key"

[broker]
url = "https://broker:8443"
trust_domain = "lab.mooring"
ca = "/etc/mooring/lab-ca.pem"

[refresh]
bundle_seconds = 300
revocations_seconds = 10
max_revocation_age_seconds = 120
TOML

cat >/etc/systemd/system/mooring-payments.service <<'UNIT'
[Unit]
Description=Mooring example payment service
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/mooring-payments --config /etc/mooring/payments.toml
Restart=on-failure
RestartSec=5s
DynamicUser=yes
LoadCredential=payments.key:/etc/mooring/tls/payments.key
NoNewPrivileges=yes
ProtectSystem=strict

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable mooring-payments.service
# It needs the broker's bundle to start; it retries until the broker is up.
systemctl restart mooring-payments.service || true
