#!/usr/bin/env bash
# The embedded default, end to end: a demo PKI recorded in an OpenSSL index.txt,
# and revd serving it on 127.0.0.1:8080 until Ctrl-C.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
revd=${REVD:-$top/build/revd}
dir=${DEMO_DIR:-$top/build/demo-pki}
listen=${DEMO_LISTEN:-127.0.0.1:8080}

bash "$top/scripts/mkpki.sh" "$dir" --leaves 40 --quiet

good=$(awk -F'\t' '$3=="good"{print $2; exit}' "$dir/manifest.tsv")
revoked=$(awk -F'\t' '$3=="revoked" && $4=="keyCompromise"{print $2; exit}' "$dir/manifest.tsv")
unknown=$(cat "$dir/unissued_serial.txt")
url="http://$listen/"
ask() { echo "  openssl ocsp -issuer $dir/issuing.pem -CAfile $dir/root.pem -verify_other $dir/chain.pem -url $url -serial 0x$1"; }

cat <<TXT

revd demo: a root CA, an issuing CA, a delegated OCSP responder and 40 leaves
(some revoked) in $dir, recorded in $dir/index.txt.

Ask for a good, a revoked and a never-issued serial (in another terminal):
$(ask "$good")
$(ask "$revoked")
$(ask "$unknown")

The same by GET, with curl:
  openssl ocsp -issuer $dir/issuing.pem -serial 0x$good -no_nonce -reqout /tmp/req.der
  curl -s "$url\$(base64 -w0 /tmp/req.der)" | openssl ocsp -respin /dev/stdin -resp_text -noverify

Revoke one while revd runs; it answers "revoked" within a second:
  openssl ca -config $dir/ca2/openssl.cnf -revoke $dir/leaves/leaf1.pem -crl_reason superseded

Serving on $listen (Ctrl-C stops).
TXT
exec "$revd" serve -index "$dir/index.txt" -CA "$dir/issuing.pem" \
	-rsigner "$dir/ocsp.pem" -rkey "$dir/ocsp.key" --listen "$listen"
