#!/usr/bin/env bash
# Writes the seed inputs of one fuzz target into a directory: the public vectors of the
# shared test data (MOORING_TESTDATA, default ../shared/testdata beside the repository),
# as they are or wrapped the way the target reads them (a mode byte, a JSON body). The
# vectors are not in the repository (DESIGN §8), so neither are these seeds nor what the
# fuzzer grows from them; only the credential targets, seeded with synthetic inputs, keep
# a corpus in fuzz/seeds/<target>/. The policy target starts from the repository's
# example policies.
#
#   fuzz/seeds.sh TARGET DIR
set -euo pipefail
target=$1
out=$2
root="$(cd "$(dirname "$0")/.." && pwd)"
testdata="${MOORING_TESTDATA:-$root/../shared/testdata}"
[ -f "$testdata/MANIFEST.md" ] || {
  echo "fuzz/seeds.sh: no test vectors at $testdata (set MOORING_TESTDATA)" >&2
  exit 1
}
mkdir -p "$out"
cd "$testdata"

n=0
# seed NAME < bytes
seed() {
  n=$((n + 1))
  cat >"$out/seed-$n-$1"
}
# copy FILE...: each file as one seed
copy() {
  local f
  for f in "$@"; do
    name=$(basename "$f")
    seed "$name" <"$f"
  done
}
b64() { base64 -w0 "$1"; }
# base64url without padding (RFC 7515 §2) of standard input.
b64url_raw() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
# The 4-byte little-endian encoding of $1, as printf escapes.
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }

case $target in
  tpm_public) copy tpm/quotes/sim-keylime/*.pub tpm/quotes/*/*.tpmt_public.bin tpm/quotes/*/*/*.tpmt_public.bin ;;
  tpm_attest) copy tpm/quotes/sim-keylime/quote.out tpm/quotes/*/*.attest.bin tpm/quotes/*/*/*.attest.bin \
    tpm/quotes/gce-windows-vtpm/ak_CreateAttestation.bin snp/azure-cvm-vtpm/*/tpm_quote_attest.bin ;;
  tpm_signature) copy tpm/quotes/sim-keylime/quotesig.out tpm/quotes/*/*.tpmt_signature.bin \
    tpm/quotes/*/*/*.tpmt_signature.bin tpm/quotes/gce-windows-vtpm/ak_CreateSignature.bin \
    snp/azure-cvm-vtpm/*/tpm_quote_sig_*.bin ;;
  pcr_file) copy tpm/quotes/sim-keylime/quotepcr.out tpm/quotes/*/pcrs.json tpm/quotes/*/*/pcrs.json \
    snp/azure-cvm-vtpm/*/pcrs_sha256.json ;;
  eventlog) copy tpm/eventlogs/*/* tpm/quotes/*/binary_bios_measurements tpm/quotes/*/*/binary_bios_measurements
    rm -f "$out"/seed-*-expected_pcrs.json ;;
  x509_bundle) copy tpm/ek-certs/*/* tpm/ek-ca/*/*.pem tpm/ek-ca/*/*.crt tpm/ek-ca/*/*.cer tpm/ek-ca/*/*/* \
    snp/amd-ca/*/* snp/*/*/vcek.* snp/milan-vlek/trustee/vlek.der snp/negative/trustee/* ;;
  snp_report) copy snp/*/*/report.bin snp/azure-cvm-vtpm/*/snp_report.bin ;;
  azure_hcl) copy snp/azure-cvm-vtpm/*/hcl_report.bin ;;
  snp_cert_table)
    # GHCB extended-report certificate tables: VCEK, ASK, ARK (DER) of each product, behind
    # the {GUID, offset, length} entries and their all-zero terminator.
    for product in milan genoa turin; do
      vceks=(snp/"$product"/*/vcek.der)
      tmp=$(mktemp -d)
      cp "${vceks[0]}" "$tmp/vcek"
      openssl x509 -in "snp/amd-ca/$product/ask.pem" -outform der -out "$tmp/ask"
      openssl x509 -in "snp/amd-ca/$product/ark.pem" -outform der -out "$tmp/ark"
      offset=$((4 * 24))
      {
        for part in vcek:'\x63\xda\x75\x8d\xe6\x64\x45\x64\xad\xc5\xf4\xb9\x3b\xe8\xac\xcd' \
          ask:'\x4a\xb7\xb3\x79\xbb\xac\x4f\xe4\xa0\x2f\x05\xae\xf3\x27\xc7\x82' \
          ark:'\xc0\xb4\x06\xa4\xa8\x03\x49\x52\x97\x43\x3f\xb6\x01\x4c\xd0\xae'; do
          size=$(stat -c %s "$tmp/${part%%:*}")
          printf '%b' "${part#*:}$(le32 "$offset")$(le32 "$size")"
          offset=$((offset + size))
        done
        head -c 24 /dev/zero
        cat "$tmp/vcek" "$tmp/ask" "$tmp/ark"
      } | seed "$product-cert-table"
      rm -rf "$tmp"
    done ;;
  api_json)
    # A mode byte (the body's type, as fuzz_targets/api_json.rs numbers them), then JSON.
    q=tpm/quotes/sim-keylime
    g=tpm/quotes/gce-cos85-vtpm/nonce9009
    m=snp/milan/virtee-sev
    ek_cert=$(b64 tpm/ek-certs/stmicro/st33htph_rsa_ek.der)
    printf '\x00{"ek_public":"%s","ek_certificate":"%s","ak_public":"%s","key_public":"%s"}' \
      "$(b64 $q/ek.pub)" "$ek_cert" "$(b64 $q/ak.pub)" "$(b64 $q/ak.pub)" | seed tpm-begin
    printf '\x00{"ek_public":"%s","ak_public":"%s","key_public":"%s"}' \
      "$(b64 $q/ek.pub)" "$(b64 $q/ak.pub)" "$(b64 $q/ak.pub)" | seed tpm-begin-enrolled
    pcrs=$(tr -d ' \n' <$g/pcrs.json)
    printf '\x01{"challenge_id":"00ff","activated_secret":"AAEC","quote":"%s","quote_signature":"%s","pcrs":%s,"certify":"%s","certify_signature":"%s"}' \
      "$(b64 $g/quote_sha256.attest.bin)" "$(b64 $g/quote_sha256.sig.tpmt_signature.bin)" "$pcrs" \
      "$(b64 tpm/quotes/gce-windows-vtpm/ak_CreateAttestation.bin)" \
      "$(b64 tpm/quotes/gce-windows-vtpm/ak_CreateSignature.bin)" | seed tpm-finish
    printf '\x01{"challenge_id":"00ff","activated_secret":"AAEC","quote":"%s","quote_signature":"%s","pcrs":{"sha256":{"0":"%s"}},"event_log":"%s","certify":"","certify_signature":""}' \
      "$(b64 $q/quote.out)" "$(b64 $q/quotesig.out)" "$(printf '%064d' 0)" \
      "$(b64 tpm/eventlogs/tpm2-tools/event-uefivar.bin)" | seed tpm-finish-eventlog
    spki=$(openssl x509 -in tpm/ek-certs/gce-vtpm/uca_tpm_ecc_sign_cert.pem -pubkey -noout | openssl pkey -pubin -outform der | base64 -w0)
    printf '\x02{"challenge_id":"00ff","report":"%s","certificate_table":"%s","key_spki":"%s","sealing_key":"%s"}' \
      "$(b64 $m/report.bin)" "$(b64 $m/vcek.der)" "$spki" "$(head -c 32 /dev/zero | base64 -w0)" | seed snp-finish
    leaf=$(tr -d '\n' <tpm/ek-certs/gce-vtpm/uca_tpm_ecc_sign_cert.pem | sed 's/-----END CERTIFICATE-----/-----END CERTIFICATE-----\\n/; s/-----BEGIN CERTIFICATE-----/-----BEGIN CERTIFICATE-----\\n/')
    printf '\x03{"credential":{"type":"x509","chain":"%s"},"peer_address":"127.0.0.2","proof":{"type":"mutual_tls"}}' \
      "$leaf" | seed verify-x509
    statement=$(printf '{"purpose":"mooring-possession-v1","audience":"payments","issued_at":1800000000,"request":"5ca1ab1e"}' | base64 -w0)
    printf '\x03{"credential":{"type":"jwt","token":"eyJhbGciOiJFUzI1NiIsImtpZCI6ImdlbjEifQ.eyJzdWIiOiJzcGlmZmU6Ly90ZXN0Lm1vb3Jpbmcvdm0vd2ViL2FiIn0.AAAA"},"peer_address":"::1","audience":"payments","proof":{"type":"signature","statement":"%s","signature":"MEUCIQ=="}}' \
      "$statement" | seed verify-jwt
    printf '\x04{"challenge_id":"ab","nonce":"AAEC","credential_blob":"AAEC","encrypted_secret":"AAEC","pcr_selection":{"sha256":[0,1,7]},"expires_at":1800000000}' | seed tpm-challenge
    printf '\x05{"challenge_id":"ab","nonce":"AAEC","expires_at":-1}' | seed snp-challenge
    printf '\x06{"spiffe_id":"spiffe://t/vm/web/ab","class":"web","x509_svid":"%s","x509_serial":"0a","jwt_svid":"a.b.c","x509_bundle":"","expires_at":1,"renew_after":0,"bound_address":"10.0.0.1","secrets":[{"name":"db","sealed":{"kind":"hpke","enc":"AAEC","ciphertext":""}},{"name":"tpm","sealed":{"kind":"tpm_import","public":"%s","duplicate":"","encrypted_seed":"","pcr_selection":{"sha1":[7]}}}]}' \
      "$leaf" "$(b64 $q/ak.pub)" | seed issued
    printf '\x07{"valid":true,"claims":{"spiffe_id":"spiffe://t/vm/web/ab","class":"web","serial":"0a","hardware_id":"ab","bound_address":"127.0.0.2","expires_at":2}}' | seed verify-response
    printf '\x08{"code":"pcr_value_not_allowed","reason":"PCR sha256:7"}' | seed error
    # A SPIFFE bundle: a P-256 CA as an x509-svid key (x5c, its own coordinates) and a jwt-svid key.
    ca=tpm/ek-ca/keylime-tpm_cert_store/INF_ECC_011.pem
    spki() { openssl x509 -in $ca -pubkey -noout | openssl pkey -pubin -outform der; }
    x=$(spki | tail -c 64 | head -c 32 | b64url_raw)
    y=$(spki | tail -c 32 | b64url_raw)
    zero=$(head -c 32 /dev/zero | b64url_raw)
    printf '\x09{"keys":[{"kty":"EC","crv":"P-256","x":"%s","y":"%s","use":"x509-svid","x5c":["%s"]},{"kty":"EC","crv":"P-256","x":"%s","y":"%s","kid":"gen1","use":"jwt-svid"}],"spiffe_sequence":3600000000,"spiffe_refresh_hint":300}' \
      "$x" "$y" "$(openssl x509 -in $ca -outform der | base64 -w0)" "$zero" "$zero" | seed bundle
    printf '\x0b{"jwt_svid":"eyJhbGciOiJFUzI1NiIsImtpZCI6ImdlbjEifQ.e30.AAAA","statement":"%s","signature":"MEUCIQ=="}' "$statement" | seed retire
    printf '\x0c{"serial":"0a1b"}' | seed retire-response
    printf '\x0d{"identity":{"kind":"ek","id":"%s"},"status":"enrolled"}' "$(printf 'ab%.0s' {1..32})" | seed identity-enroll
    printf '\x0d{"identity":{"kind":"chip","id":"00ff"},"status":"blocked"}' | seed identity-block
    printf '\x0e{"target":{"kind":"vm","id":"spiffe://test.mooring/vm/web/ab"},"reason":"stolen"}' | seed revoke-vm
    printf '\x17{"valid":false,"reason":"record 7 does not chain"}' | seed audit-verify
    exchange_statement=$(printf '{"purpose":"mooring-possession-v1","audience":"mooring-broker/token-exchange","issued_at":1800000000,"request":"%s"}' \
      "$(printf 'sts.amazonaws.com\ns3:read\n00112233445566778899aabbccddeeff' | sha256sum | cut -d' ' -f1)" | base64 -w0)
    printf '\x14{"grant_type":"urn:ietf:params:oauth:grant-type:token-exchange","subject_token":"eyJhbGciOiJFUzI1NiIsImtpZCI6ImdlbjEifQ.e30.AAAA","subject_token_type":"urn:ietf:params:oauth:token-type:jwt","audience":"sts.amazonaws.com","scope":"s3:read","nonce":"00112233445566778899aabbccddeeff","statement":"%s","signature":"MEUCIQ=="}' \
      "$exchange_statement" | seed exchange
    printf '\x15{"access_token":"a.b.c","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"N_A","expires_in":300,"scope":"s3:read"}' | seed exchange-response
    printf '\x16{"issuer":"https://id.example.org","jwks_uri":"https://id.example.org/.well-known/jwks.json","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256"],"claims_supported":["iss","sub"]}' | seed oidc-discovery
    printf '\x03{"credential":{"type":"exchanged","token":"eyJhbGciOiJFUzI1NiIsImtpZCI6ImdlbjEifQ.e30.AAAA"},"peer_address":"10.0.0.1","audience":"sts.amazonaws.com"}' | seed verify-exchanged
    printf '\x0a{"generated_at":5,"revocations":[{"target":{"kind":"credential","id":"0a1b"},"revoked_at":1,"reason":"r"},{"target":{"kind":"vm","id":"spiffe://test.mooring/vm/web/ab"},"revoked_at":1,"reason":"r"}]}' | seed revocations
    ;;
  policy_file) copy "$root"/policies/*.toml ;;
  jwt_svid | possession) ;; # synthetic seeds: fuzz/seeds/<target>
  *)
    echo "fuzz/seeds.sh: unknown target $target" >&2
    exit 1
    ;;
esac
