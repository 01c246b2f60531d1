#!/usr/bin/env bash
# Host side, before `vagrant up`: stage what the VMs get under vagrant/dist (synced to
# /mooring in every VM): the release binaries, the lab CA with the broker's and the payment
# service's server certificates and the admin client certificate, and the EK CA of the
# host's swtpm (libvirt's emulated TPMs get their EK certificates from it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
dist="$here/dist"
network="${MOORING_NETWORK:-192.168.56}"

mkdir -p "$dist/bin" "$dist/tls" "$dist/ek-roots"
for bin in mooring-broker mooring-client mooring-payments; do
  if [ ! -x "$root/target/release/$bin" ]; then
    echo "target/release/$bin is missing: cargo build --release --workspace --bins" >&2
    exit 1
  fi
  install -m 0755 "$root/target/release/$bin" "$dist/bin/$bin"
done
# The repository's units, as the Debian packages install them.
install -m 0644 "$root/packaging/broker/mooring-broker.service" "$root/packaging/client/mooring-client.service" "$dist/"
install -m 0755 "$here/pay.sh" "$here/pcrs-json.sh" "$dist/bin/"

tls="$dist/tls"
ca() { # name subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$2" -keyout "$tls/$1.key" -out "$tls/$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name ca subject extensions
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$3" -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/$2.pem" -CAkey "$tls/$2.key" -CAcreateserial \
    -days 30 -out "$tls/$1.pem" -extfile <(printf '%s\n' "$4") 2>/dev/null
  rm -f "$tls/$1.csr"
}
if [ ! -f "$tls/lab-ca.pem" ]; then
  ca lab-ca "Mooring lab CA"
  ca admin-ca "Mooring lab admin CA"
  server="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth"
  leaf broker lab-ca broker "$server
subjectAltName=DNS:broker,IP:$network.10"
  leaf payments lab-ca payments "$server
subjectAltName=DNS:payments,IP:$network.30"
  leaf admin admin-ca mooring-admin "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  rm -f "$tls/lab-ca.key" "$tls/admin-ca.key" "$tls"/*.srl
fi

# The CA that signs the emulated TPMs' EK certificates (swtpm_setup's local CA on this host).
localca="${SWTPM_LOCALCA:-/var/lib/swtpm-localca}"
if [ -r "$localca/issuercert.pem" ]; then
  cp "$localca/issuercert.pem" "$dist/ek-roots/swtpm-localca.pem"
  if [ -r "$localca/swtpm-localca-rootca-cert.pem" ]; then
    cp "$localca/swtpm-localca-rootca-cert.pem" "$dist/ek-roots/swtpm-localca-rootca.pem"
  fi
else
  echo "note: $localca/issuercert.pem is not readable; copy the swtpm local CA into" >&2
  echo "      $dist/ek-roots/ (sudo) before provisioning the broker, or enroll the EKs" >&2
fi

echo "staged $dist; now: cd vagrant && vagrant up --provider=libvirt"
