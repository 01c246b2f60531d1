#!/usr/bin/env bash
# Prints this VM's SHA-256 PCRs 0-7 as the JSON `mooring-broker policy learn-tpm --pcrs`
# reads: {"sha256": {"0": "hex", ...}}.
set -euo pipefail

export TPM2TOOLS_TCTI="${TPM2TOOLS_TCTI:-device:/dev/tpmrm0}"
tpm2_pcrread sha256:0,1,2,3,4,5,6,7 | awk '
  /^ *[0-9]+ *: *0x/ {
    gsub(/ /, "")
    split($0, kv, ":")
    value = tolower(substr(kv[2], 3))
    out = out sep "\"" kv[1] "\": \"" value "\""
    sep = ", "
  }
  END { print "{\"sha256\": {" out "}}" }'
