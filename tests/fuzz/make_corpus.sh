#!/usr/bin/env bash
# make_corpus.sh -- regenerate the fuzz targets' seed corpus.
#
#   tests/fuzz/make_corpus.sh [OUTDIR]     (default: tests/fuzz/corpus)
#
# Writes OUTDIR/fuzz_request (DER OCSP requests from `openssl ocsp -reqout`, plus a few
# handcrafted truncations and non-DER variants), OUTDIR/fuzz_get_path (those requests as
# GET path text in each alphabet revd accepts), OUTDIR/fuzz_index (index.txt files that
# `openssl ca` wrote, and handcrafted lines of every form, good and bad), OUTDIR/fuzz_config
# (configuration files) and OUTDIR/fuzz_response (OCSP responses from `openssl ocsp -index`
# for those requests, signed with EC, Ed25519 and RSA keys, every error status, and the
# RFC 9919 example when ../shared/vectors is there) and OUTDIR/fuzz_crl (CRLs from `openssl ca
# -gencrl`: full with every reason, empty, with an IssuingDistributionPoint and freshestCRL, a
# delta with removeFromCRL, a nextUpdate in GeneralizedTime; and a few NIST PKITS CRLs when
# ../shared/vectors is there). Needs openssl(1) and scripts/mkpki.sh; the
# output is meant to be committed, so it stays small. Requests carry random nonces and
# fresh keys, so each run's files differ; rerun only to change what the seeds cover.
# Files named regress-* are inputs that once found a bug: kept as they are.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/corpus}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bash "$root/scripts/mkpki.sh" "$work/pki" --leaves 9 --quiet
pki=$work/pki
serial() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$pki/manifest.tsv"; }
s1=0x$(serial leaf1) s2=0x$(serial leaf2) s3=0x$(serial leaf3) s5=0x$(serial leaf5)
s7=0x$(serial leaf7) s9=0x$(serial leaf9)

# Regression seeds (regress-*: inputs that once found a bug) are kept; the rest is remade.
mkdir -p "$out/fuzz_request" "$out/fuzz_get_path" "$out/fuzz_index" "$out/fuzz_config" \
    "$out/fuzz_response" "$out/fuzz_crl"
find "$out/fuzz_request" "$out/fuzz_get_path" "$out/fuzz_index" "$out/fuzz_config" \
    "$out/fuzz_response" "$out/fuzz_crl" -type f ! -name 'regress-*' -delete

# ------------------------------------------------------------------ requests
R=$out/fuzz_request
req() { # req NAME ARGS...: one request written by openssl ocsp
    local name=$1
    shift
    openssl ocsp -issuer "$pki/issuing.pem" -reqout "$R/$name" "$@" >/dev/null 2>&1
}
req sha1-no-nonce.der -serial "$s1" -no_nonce
req sha1-nonce.der -serial "$s1" -nonce
req sha256-no-nonce.der -sha256 -serial "$s2" -no_nonce
req sha384-nonce.der -sha384 -serial "$s3" -nonce
req sha512-no-nonce.der -sha512 -serial "$s5" -no_nonce
req md5-unknown-hash.der -md5 -serial "$s1" -no_nonce
req from-cert.der -cert "$pki/leaves/leaf1.pem" -nonce
req four-serials.der -serial "$s1" -serial "$s2" -serial "$s3" -serial "$s5" -nonce
req serial-zero-and-high-bit.der -serial 0 -serial 0x80 -serial 0xFFFFFFFFFFFFFFFFFF -no_nonce
req signed.der -serial "$s1" -signer "$pki/ocsp.pem" -signkey "$pki/ocsp.key" -nonce
req signed-no-certs.der -serial "$s2" -signer "$pki/ocsp.pem" -signkey "$pki/ocsp.key" \
    -no_certs -no_nonce
many=()
for i in $(seq 1 21); do many+=(-serial "$((0x1000 + i))"); done
req twenty-one-serials.der "${many[@]}" -no_nonce

# Handcrafted from those: cut short, padded, and in BER.
head -c 20 "$R/sha1-nonce.der" >"$R/cut-20.der"
len=$(wc -c <"$R/sha1-nonce.der")
head -c $((len - 1)) "$R/sha1-nonce.der" >"$R/cut-last-byte.der"
{ cat "$R/sha1-no-nonce.der"; printf '\0'; } >"$R/trailing-zero.der"
# sha1-no-nonce.der is under 128 bytes: 30 LL ... becomes 30 80 ... 00 00.
{ printf '\x30\x80'; tail -c +3 "$R/sha1-no-nonce.der"; printf '\0\0'; } >"$R/ber-indefinite.der"
printf '\x30\x00' >"$R/empty-sequence.der"

# ------------------------------------------------------------------ GET paths
G=$out/fuzz_get_path
b64() { openssl base64 -A <"$1"; }
b64 "$R/sha1-nonce.der" >"$G/standard.txt"
b64 "$R/sha256-no-nonce.der" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g' >"$G/percent-upper.txt"
b64 "$R/four-serials.der" | sed 's/+/%2b/g; s/\//%2f/g; s/=/%3d/g' >"$G/percent-lower.txt"
b64 "$R/signed.der" | tr '+/' '-_' | tr -d '=' >"$G/url-safe-unpadded.txt"
b64 "$R/sha384-nonce.der" | tr '+' ' ' >"$G/plus-as-space.txt"
b64 "$R/sha512-no-nonce.der" | sed 's/+/%2B/; s/=/%3D/' >"$G/mixed-escapes.txt"
printf 'AB==' >"$G/bad-trailing-bits.txt"
printf 'MEUw%%zzQzBB' >"$G/bad-escape.txt"

# ------------------------------------------------------------------ index.txt
I=$out/fuzz_index
cp "$pki/ca2/index.txt" "$I/openssl-ca-issuing.txt"
cp "$pki/ca1/index.txt" "$I/openssl-ca-root.txt"
E=301231235959Z
V=240101120000Z
T=$'\t'
cat >"$I/every-form.txt" <<EOF
# every revocation field openssl ca writes
V${T}${E}${T}${T}1001${T}unknown${T}/CN=good
R${T}${E}${T}${V}${T}1002${T}unknown${T}/CN=no reason
R${T}${E}${T}${V},keyCompromise${T}1003${T}unknown${T}/CN=reason
R${T}${E}${T}${V},keyTime,20231231235959Z${T}1004${T}unknown${T}/CN=crl_compromise
R${T}${E}${T}${V},CAkeyTime,20231130000000Z${T}1005${T}unknown${T}/CN=crl_CA_compromise
R${T}${E}${T}${V},holdInstruction,holdInstructionReject${T}1006${T}unknown${T}/CN=hold
R${T}${E}${T}${V},removeFromCRL${T}1007${T}unknown${T}/CN=released
E${T}200101000000Z${T}${T}1008${T}unknown${T}/CN=expired
V${T}20510101000000Z${T}${T}80${T}unknown${T}/CN=generalized time, high bit
R${T}${E}${T}${V},superseded${T}-01${T}unknown${T}/CN=negative
R${T}${E}${T}${V},AACompromise${T}ABC${T}unknown${T}/CN=odd length
EOF
printf 'V\t%s\t\t01\tunknown\t/CN=crlf\r\nR\t%s\t%s,cessationOfOperation\t02\tunknown\t/CN=x\r\n' \
    "$E" "$E" "$V" >"$I/crlf.txt"
printf 'V\t%s\t\tA1\tu\t/CN=a\nR\t%s\t%s,superseded\tA1\tu\t/CN=a\nR\t%s\t%s\tB2\tu\t/CN=b\nV\t%s\t\t00B2\tu\t/CN=b\n' \
    "$E" "$E" "$V" "$E" "$V" "$E" >"$I/duplicates.txt"
printf '# bad\nV\t%s\t\t01\tunknown\n' "$E" >"$I/bad-five-fields.txt"
printf 'R\t%s\t%s,stolen\t01\tunknown\t/CN=x\n' "$E" "$V" >"$I/bad-reason.txt"
printf 'R\t%s\t%s,keyTime\t01\tunknown\t/CN=x\n' "$E" "$V" >"$I/bad-key-time.txt"
printf 'V\t%s\t%s\t01\tunknown\t/CN=x\n' "$E" "$V" >"$I/bad-valid-with-revocation.txt"
printf 'V\t%s\t\t0x1G\tunknown\t/CN=x\n' "$E" >"$I/bad-serial.txt"

# ------------------------------------------------------------------ configuration
C=$out/fuzz_config
cat >"$C/full.ini" <<'EOF'
; every key revd reads
[server]
listen = 127.0.0.1:8080, [::1]:8080
workers = auto
max_connections = 20000
max_header_bytes = 8k
max_headers = 64
max_url_bytes = 4096
max_body_bytes = 16k
header_timeout = 10s
body_timeout = 10000ms
idle_timeout = 1m
write_timeout = 30s
log_level = info

[ocsp]
path = /ocsp
validity = 24h
max_age = 1h
nonce = sign
max_certids = 20
not_issued = unknown
responder_id = key
sign_budget = 512
cache_entries = 1m
index_poll = 250ms
index_max_bytes = 1g

[postgres]
dsn = host=/run/postgresql dbname=ca user=revd
lookup_timeout = 1s
sweep_interval = 10s

[issuer root]
ca = /etc/revd/ca.pem
signer_cert = /etc/revd/ocsp.pem
signer_key = /etc/revd/ocsp.key
signer_other = /etc/revd/chain.pem
index = /etc/revd/index.txt
not_issued = revoked
responder_id = name
include_signer_cert = yes

[issuer sub]
ca = /etc/revd/sub.pem
signer_key = /etc/revd/sub.key
store = postgres
db_issuer = Sub CA 2024
EOF
cat >"$C/minimal.ini" <<'EOF'
[issuer "ca-2024.1"]
ca = ca.pem
signer_key = ca.key
index = index.txt
EOF
cat >"$C/errors.ini" <<'EOF'
[server]
workers = 0
this line is not ini
[ocsp]
validity = 1h
nonce = always
[issuer bad/name]
ca = x
[frontend]
key = value
EOF
cat >"$C/validate-fails.ini" <<'EOF'
[server]
max_header_bytes = 1024
max_url_bytes = 2048
[ocsp]
validity = 8h
max_age = 9h
[issuer a]
index = i
EOF
printf '[server]\nlisten = %s[::1]:8080\n' "$(printf '127.0.0.1:80%02d, ' $(seq 0 10))$(printf '%*s' 20 '')" \
    >"$C/overlong-line.ini"
printf 'key = outside\n[ocsp]\npath = /\n' >"$C/outside-section.ini"

# ------------------------------------------------------------------ responses
P=$out/fuzz_response
# resp NAME REQUEST [ARGS...]: the answer `openssl ocsp` gives to REQUEST from index.txt,
# by the delegated responder unless ARGS name another signer.
resp() {
    local name=$1 reqf=$2
    shift 2
    local signer=(-rsigner "$pki/ocsp.pem" -rkey "$pki/ocsp.key")
    [[ " $* " == *" -rsigner "* ]] && signer=()
    openssl ocsp -index "$pki/index.txt" -CA "$pki/issuing.pem" "${signer[@]}" \
        -reqin "$reqf" -respout "$P/$name" "$@" >/dev/null 2>&1
}
req revoked-key-time.der -serial "$s7" -serial "$s9" -nonce
req unissued.der -serial 0x7e57 -no_nonce
resp good-by-name.der "$R/sha1-no-nonce.der" -ndays 1
resp good-no-next-update.der "$R/sha1-nonce.der"
resp four-answers-nonce.der "$R/four-serials.der" -nmin 90
resp revoked-by-key-no-certs.der "$R/sha256-no-nonce.der" -resp_key_id -resp_no_certs -ndays 7
resp sha384-sha384-signature.der "$R/sha384-nonce.der" -rmd sha384 -ndays 1
resp sha512-chain.der "$R/sha512-no-nonce.der" -rother "$pki/chain.pem" -ndays 1
resp md5-unknown-hash.der "$R/md5-unknown-hash.der" -ndays 1
resp invalidity-date-and-hold.der "$R/revoked-key-time.der" -ndays 1
resp unknown-serial.der "$R/unissued.der" -resp_key_id -ndays 1
resp bad-signature.der "$R/serial-zero-and-high-bit.der" -badsig -ndays 1
resp twenty-one-answers.der "$R/twenty-one-serials.der" -resp_key_id -resp_no_certs -ndays 1
resp signed-by-ca.der "$R/from-cert.der" -rsigner "$pki/issuing.pem" -rkey "$pki/issuing.key" \
    -resp_key_id -resp_no_certs -ndays 1
rm -f "$R/revoked-key-time.der" "$R/unissued.der" # requests only these answers need
# Other key types: a one-level PKI each, its CA answering for itself.
for kt in ed25519 rsa; do
    bash "$root/scripts/mkpki.sh" "$work/pki-$kt" --leaves 1 --levels 1 --key-type "$kt" --quiet
    openssl ocsp -issuer "$work/pki-$kt/issuing.pem" -cert "$work/pki-$kt/leaves/leaf1.pem" \
        -reqout "$work/req-$kt.der" -nonce >/dev/null 2>&1
    openssl ocsp -index "$work/pki-$kt/index.txt" -CA "$work/pki-$kt/issuing.pem" \
        -rsigner "$work/pki-$kt/issuing.pem" -rkey "$work/pki-$kt/issuing.key" \
        -reqin "$work/req-$kt.der" -respout "$P/$kt.der" -ndays 1 >/dev/null 2>&1
done
vectors=$root/../shared/vectors/rfc9919/response.der
[[ -f $vectors ]] && cat "$vectors" >"$P/rfc9919.der"
# Every responseStatus, and the unassigned 4.
for st in 1 2 3 4 5 6; do printf '\x30\x03\x0a\x01\x0'"$st" >"$P/status-$st.der"; done
# Handmade from those: cut short, padded, and in BER.
len=$(wc -c <"$P/good-by-name.der")
head -c $((len / 2)) "$P/good-by-name.der" >"$P/cut-half.der"
head -c $((len - 1)) "$P/good-by-name.der" >"$P/cut-last-byte.der"
{ cat "$P/good-by-name.der"; printf '\0'; } >"$P/trailing-zero.der"
{ printf '\x30\x80'; tail -c +3 "$P/status-3.der"; printf '\0\0'; } >"$P/ber-indefinite.der"

# ------------------------------------------------------------------ CRLs
# Last: the removeFromCRL revocation below changes the issuing CA's index.txt.
L=$out/fuzz_crl
crl_der() { openssl crl -in "$1" -outform DER -out "$L/$2"; }
crl_der "$pki/ca2/crl.pem" full-every-reason.der # written by mkpki.sh
crl_der "$pki/ca1/crl.pem" empty.der             # the root revoked nothing
# More CRL extensions: a copy of the issuing CA's configuration with sections for them.
cat "$pki/ca2/openssl.cnf" - >"$work/crl.cnf" <<'EOF'

[ crl_delta ]
authorityKeyIdentifier   = keyid:always
deltaCRL                 = critical, DER:02:02:0F:FF
issuingDistributionPoint = critical, @idp

[ crl_full_idp ]
authorityKeyIdentifier   = keyid:always
issuingDistributionPoint = critical, @idp
freshestCRL              = URI:http://crl.revd.test/ca2-delta.crl

[ idp ]
fullname = URI:http://crl.revd.test/ca2.crl
EOF
gencrl() { # gencrl CONFIG NAME [ARGS...]: a CRL by that CA, into $L/NAME.der
    local conf=$1 name=$2
    shift 2
    openssl ca -config "$conf" -batch -gencrl -out "$work/$name.pem" "$@" >/dev/null 2>&1
    crl_der "$work/$name.pem" "$name.der"
}
gencrl "$work/crl.cnf" full-idp-freshest -crlexts crl_full_idp
gencrl "$pki/ca1/openssl.cnf" next-update-2050s -crldays 10000 # GeneralizedTime
good=$(awk -F'\t' '$3 == "good" { print $6; exit }' "$pki/manifest.tsv")
openssl ca -config "$work/crl.cnf" -batch -revoke "$pki/$good" -crl_reason removeFromCRL \
    >/dev/null 2>&1
gencrl "$work/crl.cnf" delta-remove-from-crl -crlexts crl_delta -crlhours 1
# Handmade from those: cut short and padded.
len=$(wc -c <"$L/full-every-reason.der")
head -c $((len - 1)) "$L/full-every-reason.der" >"$L/cut-last-byte.der"
{ cat "$L/empty.der"; printf '\0'; } >"$L/trailing-zero.der"
# NIST PKITS: a delta and its base, IDPs (onlyContainsUserCerts; an indirect CRL's), a
# GeneralizedTime nextUpdate, a long serial, and two revd refuses (an unknown critical
# extension; entries with certificateIssuer).
pkits=$root/../shared/vectors/pkits/crls
if [[ -d $pkits ]]; then
    for f in TrustAnchorRootCRL deltaCRLCA1CRL deltaCRLCA1deltaCRL onlyContainsUserCertsCACRL \
        GeneralizedTimeCRLnextUpdateCACRL LongSerialNumberCACRL UnknownCRLExtensionCACRL \
        indirectCRLCA3cRLIssuerCRL indirectCRLCA5CRL; do
        cat "$pkits/$f.crl" >"$L/pkits-$f.der"
    done
fi

n=$(find "$out" -type f | wc -l)
bytes=$(find "$out" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
echo "make_corpus: $n files, $bytes bytes in $out"
