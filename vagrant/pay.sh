#!/usr/bin/env bash
# Pays from this VM with the credentials in /run/mooring (root: the directory is 0700):
#
#   pay.sh jwt [REF]          JWT-SVID + a possession statement signed with K in the TPM
#   pay.sh bearer-only [REF]  the JWT-SVID alone (what a stolen token file gives a thief)
#   pay.sh mtls [REF]         mutual TLS with the X.509-SVID, K signing in the TPM
#   pay.sh headers [REF]      print the JWT request's headers and body instead of sending
#   pay.sh send FILE          send a request printed by `headers` (a replay from elsewhere)
#
# K is used through OpenSSL's tpm2 provider (svid.key is a TSS2 key file: only the TPM that
# created it can load it). Prints the service's HTTP status and JSON answer.
set -euo pipefail

runtime="${MOORING_RUNTIME:-/run/mooring}"
service="${MOORING_PAYMENTS:-https://payments:9443}"
ca="${MOORING_LAB_CA:-/etc/mooring/lab-ca.pem}"
export TPM2OPENSSL_TCTI="${TPM2OPENSSL_TCTI:-device:/dev/tpmrm0}"
tpm=(-provider tpm2 -provider default -propquery '?provider=tpm2')

mode="${1:-jwt}"
reference="${2:-$(hostname)-$(date +%s%N)}"
body="{\"amount_cents\":1250,\"currency\":\"EUR\",\"reference\":\"${reference}\"}"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# The possession header: statement bytes and K's signature over them (ECDSA P-256, DER).
possession() {
  local digest statement signature
  digest="$(printf 'POST\n/pay\n%s' "$body" | sha256sum | cut -d' ' -f1)"
  statement="{\"purpose\":\"mooring-possession-v1\",\"audience\":\"payments\",\"issued_at\":$(date +%s),\"request\":\"${digest}\"}"
  if ! signature="$(printf '%s' "$statement" | openssl dgst "${tpm[@]}" -sha256 -sign "$runtime/svid.key" | b64url)"; then
    echo "pay.sh: K cannot be used here: this TPM cannot load $runtime/svid.key" >&2
    exit 1
  fi
  printf '%s.%s' "$(printf '%s' "$statement" | b64url)" "$signature"
}

post() { # extra curl arguments...
  curl -sS --cacert "$ca" -o /dev/stdout -w '\nHTTP %{http_code}\n' \
    -H 'content-type: application/json' --data-binary "$body" "$@" "$service/pay"
}

case "$mode" in
  jwt)
    post -H "authorization: Bearer $(cat "$runtime/jwt-svid")" -H "mooring-possession: $(possession)"
    ;;
  bearer-only)
    post -H "authorization: Bearer $(cat "$runtime/jwt-svid")"
    ;;
  headers)
    printf 'authorization: Bearer %s\nmooring-possession: %s\nbody: %s\n' \
      "$(cat "$runtime/jwt-svid")" "$(possession)" "$body"
    ;;
  send)
    file="${2:?pay.sh send FILE}"
    body="$(sed -n 's/^body: //p' "$file")"
    post -H "$(grep '^authorization: ' "$file")" -H "$(grep '^mooring-possession: ' "$file")"
    ;;
  mtls)
    host="${service#https://}"
    request="$(printf 'POST /pay HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
      "${host%%:*}" "${#body}" "$body")"
    printf '%s' "$request" | openssl s_client "${tpm[@]}" -quiet -verify_return_error \
      -connect "$host" -servername "${host%%:*}" -CAfile "$ca" \
      -cert "$runtime/svid.pem" -key "$runtime/svid.key" 2>/dev/null | sed -n '1p;$p'
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
