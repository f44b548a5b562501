#!/usr/bin/env bash
# mkpki.sh -- build a throw-away test/demo PKI for revd.
#
# revd answers OCSP queries from an `openssl ca` index.txt, so its tests need
# index.txt files that OpenSSL itself wrote, containing every status and
# revocation-field form that `openssl ca` can produce.  This script makes one
# using nothing but the openssl CLI:
#
#   ca1/ (self-signed root) -> ca2/ -> ... -> caL/ (the "issuing CA")
#
# Each caK/ is a real `openssl ca` directory (openssl.cnf, index.txt, serial,
# newcerts/, ...).  Every CA except the root is issued by its parent's
# `openssl ca`, every CA issues a delegated OCSP responder certificate
# (caK/ocsp.pem), and the issuing CA issues N leaves, some of which are then
# revoked in each way `openssl ca -revoke` can record (all but removeFromCRL)
# and one of which is issued already expired.  manifest.tsv records what each
# leaf should be.
#
# OUTDIR/ caK/{ca.pem,ca.key,openssl.cnf,index.txt,index.txt.attr,serial,
#              crlnumber,newcerts/,ocsp.pem,ocsp.key,crl.pem}   K = 1..L
#         leaves/leaf<i>.{pem,key}   manifest.tsv   unissued_serial.txt
#         root.pem  chain.pem (caL..ca1)  issuing.{pem,key}  ocsp.{pem,key}
#         index.txt -> caL/index.txt   args.txt   mkpki.log
#
# Usage: scripts/mkpki.sh OUTDIR [--leaves N] [--levels L]
#                                [--key-type ec|ec384|rsa|ed25519] [--quiet]
#
# OUTDIR must be absent or empty.  If it holds a complete earlier run made with
# the same arguments (see OUTDIR/args.txt) the script says "reusing" and exits
# 0, so test suites can call it every time; concurrent callers are serialised
# with flock(1) on OUTDIR.  All openssl output goes to OUTDIR/mkpki.log.
set -euo pipefail

PROG=${0##*/}

usage() {
    cat >&2 <<EOF
usage: $PROG OUTDIR [--leaves N] [--levels L] [--key-type ec|ec384|rsa|ed25519] [--quiet]
  --leaves N     end-entity certificates issued by the deepest CA (default 40)
  --levels L     CA levels, 1..5; 1 = root issues the leaves (default 2)
  --key-type T   ec (P-256, default), ec384 (P-384), rsa (2048), ed25519
  --quiet        print nothing on success
EOF
    exit 2
}

die() { echo "$PROG: $*" >&2; exit 2; }

# ---------------------------------------------------------------- arguments
OUT="" LEAVES=40 LEVELS=2 KEYTYPE=ec QUIET=0
while (($#)); do
    case $1 in
        --leaves)     (($# >= 2)) || usage; LEAVES=$2; shift 2 ;;
        --leaves=*)   LEAVES=${1#*=}; shift ;;
        --levels)     (($# >= 2)) || usage; LEVELS=$2; shift 2 ;;
        --levels=*)   LEVELS=${1#*=}; shift ;;
        --key-type)   (($# >= 2)) || usage; KEYTYPE=$2; shift 2 ;;
        --key-type=*) KEYTYPE=${1#*=}; shift ;;
        --quiet|-q)   QUIET=1; shift ;;
        -h|--help)    usage ;;
        -*)           echo "$PROG: unknown option $1" >&2; usage ;;
        *)            [[ -z $OUT ]] || usage; OUT=$1; shift ;;
    esac
done
[[ -n $OUT ]] || usage
[[ $LEAVES =~ ^[1-9][0-9]{0,4}$ ]] || die "--leaves must be an integer 1..99999"
[[ $LEVELS =~ ^[1-5]$ ]] || die "--levels must be 1..5"
case $KEYTYPE in
    ec)      NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    ec384)   NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:P-384) ;;
    rsa)     NEWKEY=(-newkey rsa:2048) ;;
    ed25519) NEWKEY=(-newkey ed25519) ;;
    *)       die "--key-type must be ec, ec384, rsa or ed25519" ;;
esac
ARGS_TXT=$(printf 'leaves=%s\nlevels=%s\nkey_type=%s' "$LEAVES" "$LEVELS" "$KEYTYPE")

# ------------------------------------------------------- OUTDIR: new or reuse
# openssl.cnf cannot quote these characters, and the CA configs hold OUTDIR.
case $OUT in *[\$\#\\\"\']* | *$'\n'*) die "OUTDIR must not contain \$ # \\ \" ' or newlines" ;; esac
if [[ -e $OUT && ! -d $OUT ]]; then die "$OUT exists and is not a directory"; fi
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd -P)
if command -v flock >/dev/null; then
    exec 9<"$OUT"
    flock -w 600 9 || die "timed out waiting for another $PROG on $OUT"
fi
if [[ -n $(ls -A -- "$OUT") ]]; then
    if [[ -f $OUT/args.txt && -f $OUT/manifest.tsv && $(<"$OUT/args.txt") == "$ARGS_TXT" ]]; then
        ((QUIET)) || echo "$PROG: reusing $OUT (${ARGS_TXT//$'\n'/ })"
        exit 0
    fi
    if [[ -f $OUT/mkpki.log && ! -f $OUT/args.txt ]]; then
        die "$OUT holds an unfinished run (see $OUT/mkpki.log); remove it first"
    fi
    die "$OUT is not empty and is not a complete run with these arguments; remove it first"
fi

# ------------------------------------------------------------------ plumbing
START=$(date +%s.%N)
LOG=$OUT/mkpki.log
TMP=$OUT/tmp
ISS=$OUT/ca$LEVELS            # the issuing CA: deepest level, issues the leaves
BUILDING=1
mkdir -p "$TMP" "$OUT/leaves"
: >"$LOG"

on_exit() {
    local rc=$?
    if ((rc != 0 && BUILDING)); then
        echo "$PROG: FAILED (exit $rc); last lines of $LOG:" >&2
        tail -n 25 "$LOG" >&2 || true
    fi
}
trap on_exit EXIT

# run CMD...: log the command line, send all its output to the log.
run() {
    printf '+ %s\n' "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

fail() { echo "ERROR: $*" >>"$LOG"; exit 1; }

# Serial numbers.  We write the `serial` file before each `openssl ca` call so
# that the index holds a spread of shapes: high bit set in the first byte (DER
# needs a leading 00), a leading zero nibble, the 20-byte maximum, one byte.
POOL="" POOLPOS=0
declare -A USED_SERIAL=()
# new_serial CLASS -> sets $SERIAL (uppercase hex, as `openssl ca` writes it)
new_serial() {
    local class=$1 nbytes=16 b hex
    case $class in lo20) nbytes=20 ;; hi1) nbytes=1 ;; esac
    while :; do
        if ((POOLPOS + 2 * nbytes > ${#POOL})); then
            POOL=${POOL:POOLPOS}$(openssl rand -hex 512) POOLPOS=0
        fi
        hex=${POOL:POOLPOS:2*nbytes}
        POOLPOS=$((POOLPOS + 2 * nbytes))
        b=$((16#${hex:0:2}))
        case $class in
            hi*)  b=$((b | 0x80)) ;;                 # 80..FF
            lo16) b=$(((b & 0x7F) | 0x10)) ;;        # 10..7F
            nib)  b=$((1 + b % 15)) ;;               # 01..0F: hex starts with 0
            lo20) b=$(((b & 0x3F) | 0x40)) ;;        # 40..7F, 20 bytes
            *)    ((b != 0)) || b=1 ;;               # any: no leading 00 byte
        esac
        printf -v SERIAL '%02X%s' "$b" "${hex:2}"
        SERIAL=${SERIAL^^}
        [[ -z ${USED_SERIAL[$SERIAL]:-} ]] && break
    done
    USED_SERIAL[$SERIAL]=1
}

# Key generation is the slow part (RSA), so every key and its CSR is made up
# front, in parallel: keyjob queues one `openssl req -newkey` command line
# (NUL-separated, always the same number of words), make_keys runs the queue.
KEYJOBS=()
keyjob() {      # keyjob KEY CSR SUBJECT
    local job=(req -new -batch -config "$OUT/ca1/openssl.cnf" "${NEWKEY[@]}" -noenc
               -keyout "$1" -out "$2" -subj "$3")
    KEYJOBS+=("${job[@]}")
    KEYJOB_WORDS=${#job[@]}
    printf '+ (queued) openssl %s\n' "${job[*]}" >>"$LOG"
}
make_keys() {
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    printf '+ running the queued openssl commands, %s at a time\n' "$jobs" >>"$LOG"
    printf '%s\0' "${KEYJOBS[@]}" |
        xargs -0 -n "$KEYJOB_WORDS" -P "$jobs" openssl >>"$LOG" 2>&1 ||
        fail "key or CSR generation failed"
}

# ------------------------------------------------------------ openssl config
LEAF_EXT='basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always'

write_ca_config() {   # write_ca_config K
    local k=$1 d=$OUT/ca$1
    cat >"$d/openssl.cnf" <<EOF
# openssl ca configuration for revd test CA level $k (generated by mkpki.sh).
# Use as: openssl ca -config $d/openssl.cnf ...
[ ca ]
default_ca = CA_default

[ CA_default ]
dir              = $d
database         = \$dir/index.txt
new_certs_dir    = \$dir/newcerts
certificate      = \$dir/ca.pem
private_key      = \$dir/ca.key
serial           = \$dir/serial
crlnumber        = \$dir/crlnumber
crl              = \$dir/crl.pem
default_md       = sha256
default_days     = 365
default_crl_days = 30
policy           = policy_anything
unique_subject   = no
copy_extensions  = none
email_in_dn      = no
name_opt         = ca_default
cert_opt         = ca_default
x509_extensions  = v3_leaf
crl_extensions   = crl_ext

[ policy_anything ]
countryName            = optional
stateOrProvinceName    = optional
localityName           = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied
emailAddress           = optional

[ req ]
distinguished_name = req_dn
string_mask        = utf8only

[ req_dn ]

[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# Delegated OCSP responder (RFC 6960 4.2.2.2), with id-pkix-ocsp-nocheck.
[ v3_ocsp ]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = OCSPSigning
noCheck                = ignored
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# Leaves; mkpki.sh passes the same section plus subjectAltName via -extfile.
[ v3_leaf ]
$LEAF_EXT

[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
}

# ------------------------------------------------------ make CA / issue / revoke
SUBJ_O="/O=revd test PKI"
ca_subject() {
    if (($1 == 1)); then echo "$SUBJ_O/CN=revd test root CA (level 1)"
    else echo "$SUBJ_O/CN=revd test CA level $1"; fi
}

# issue CADIR CSR OUT EXT-SECTION SERIAL-CLASS [openssl ca args...]
# Signs CSR with CADIR's `openssl ca`; sets $SERIAL to the new serial.
issue() {
    local cadir=$1 csr=$2 out=$3 ext=$4
    new_serial "$5"
    shift 5
    printf '%s\n' "$SERIAL" >"$cadir/serial"
    run openssl ca -config "$cadir/openssl.cnf" -batch -notext \
        -in "$csr" -out "$out" -extensions "$ext" "$@"
    [[ -s $cadir/newcerts/$SERIAL.pem ]] || fail "$SERIAL not in $cadir/newcerts"
}

# make_ca K: the root is self-signed by `openssl req -x509`; level K > 1 is
# issued by level K-1's `openssl ca`, so it is recorded in that index.txt.
make_ca() {
    local k=$1 d=$OUT/ca$1
    if ((k == 1)); then
        new_serial hi16
        run openssl req -x509 -batch -config "$d/openssl.cnf" \
            -in "$TMP/ca1.csr" -key "$d/ca.key" -set_serial "0x$SERIAL" \
            -days 3650 -extensions v3_ca -out "$d/ca.pem"
    else
        issue "$OUT/ca$((k - 1))" "$TMP/ca$k.csr" "$d/ca.pem" v3_ca any16 -days 3650
    fi
}

# revoke CADIR CERT [openssl ca revocation args...]
revoke() {
    local cadir=$1 cert=$2
    shift 2
    run openssl ca -config "$cadir/openssl.cnf" -batch -revoke "$cert" "$@"
}

# ---------------------------------------------------------------- the leaves
# Leaf i gets one of these treatments; the rest are good.  Listed in priority
# order: with few leaves the list is cut from the end (see manifest.tsv).
#   name | openssl ca options | manifest reason | invalidity | index.txt suffix
# The suffix is what follows the revocation time in index.txt field 3.
SPECIALS=(
    "revoked|-|unspecified|-|"
    "revoked|-crl_reason keyCompromise|keyCompromise|-|,keyCompromise"
    "revoked|-crl_reason superseded|superseded|-|,superseded"
    "revoked|-crl_reason cessationOfOperation|cessationOfOperation|-|,cessationOfOperation"
    "revoked|-crl_reason affiliationChanged|affiliationChanged|-|,affiliationChanged"
    "revoked|-crl_compromise 20240102030405Z|keyCompromise|20240102030405Z|,keyTime,20240102030405Z"
    "revoked|-crl_CA_compromise 20230615120000Z|cACompromise|20230615120000Z|,CAkeyTime,20230615120000Z"
    "revoked|-crl_hold holdInstructionReject|certificateHold|-|,holdInstruction,holdInstructionReject"
    "expired|-startdate 20200101000000Z -enddate 20210101000000Z|-|-|"
    "revoked|-crl_reason CACompromise|cACompromise|-|,CACompromise"
    "revoked|-crl_reason unspecified|unspecified|-|,unspecified"
    "revoked|-crl_reason certificateHold|certificateHold|-|,certificateHold"
)
NSPECIAL=${#SPECIALS[@]}
# Leaves 1..GOOD_FRONT are good, then the specials, then good again.
GOOD_FRONT=$((LEAVES / 2))
((LEAVES - GOOD_FRONT >= NSPECIAL)) || GOOD_FRONT=$((LEAVES - NSPECIAL))
((GOOD_FRONT >= 1)) || GOOD_FRONT=1

leaf_treatment() {    # leaf_treatment I -> sets TREAT to a SPECIALS entry
    local j=$(($1 - GOOD_FRONT - 1))
    TREAT="good|-|-|-|"
    if ((j >= 0 && j < NSPECIAL)); then TREAT=${SPECIALS[j]}; fi
}
leaf_serial_class() { # leaf_serial_class I -> sets CLASS (see new_serial)
    case $1 in
        1) CLASS=hi16 ;; 2) CLASS=lo16 ;; 3) CLASS=nib ;; 4) CLASS=lo20 ;; 5) CLASS=hi1 ;;
        *) if (($1 % 2)); then CLASS=hi16; else CLASS=lo16; fi ;;
    esac
}

# ===================================================================== build
{ echo "# $PROG $OUT ${ARGS_TXT//$'\n'/ }"; openssl version; } >>"$LOG"

for ((k = 1; k <= LEVELS; k++)); do
    d=$OUT/ca$k
    mkdir -p "$d/newcerts"
    : >"$d/index.txt"
    echo "unique_subject = no" >"$d/index.txt.attr"
    echo 01 >"$d/serial"            # overwritten before every issuance
    echo 1000 >"$d/crlnumber"
    write_ca_config "$k"
done

# 1. keys (+ CSRs), in parallel
for ((k = 1; k <= LEVELS; k++)); do
    d=$OUT/ca$k
    keyjob "$d/ca.key" "$TMP/ca$k.csr" "$(ca_subject "$k")"
    keyjob "$d/ocsp.key" "$TMP/ocsp$k.csr" "$SUBJ_O/CN=revd test OCSP responder for CA level $k"
done
for ((i = 1; i <= LEAVES; i++)); do
    keyjob "$OUT/leaves/leaf$i.key" "$TMP/leaf$i.csr" "$SUBJ_O/CN=leaf$i.revd.test"
done
make_keys

# 2. the CA chain, and one delegated OCSP responder per CA
for ((k = 1; k <= LEVELS; k++)); do
    make_ca "$k"
    issue "$OUT/ca$k" "$TMP/ocsp$k.csr" "$OUT/ca$k/ocsp.pem" v3_ocsp any16 -days 365
done

# 3. leaves, from the issuing CA
declare -a L_SERIAL L_STATUS L_REASON L_INVAL L_SUFFIX
for ((i = 1; i <= LEAVES; i++)); do
    leaf_treatment "$i"
    leaf_serial_class "$i"
    IFS='|' read -r status opts reason inval suffix <<<"$TREAT"
    printf '[v3_leaf]\n%s\nsubjectAltName = DNS:leaf%d.revd.test\n' "$LEAF_EXT" "$i" >"$TMP/leaf$i.ext"
    if [[ $status == expired ]]; then
        read -ra dates <<<"$opts"
    else
        dates=(-days 365)
    fi
    issue "$ISS" "$TMP/leaf$i.csr" "$OUT/leaves/leaf$i.pem" v3_leaf \
        "$CLASS" -extfile "$TMP/leaf$i.ext" "${dates[@]}"
    L_SERIAL[i]=$SERIAL L_STATUS[i]=$status L_REASON[i]=$reason L_INVAL[i]=$inval L_SUFFIX[i]=$suffix
done

# 4. revocations
for ((i = 1; i <= LEAVES; i++)); do
    [[ ${L_STATUS[i]} == revoked ]] || continue
    leaf_treatment "$i"
    IFS='|' read -r _ opts _ <<<"$TREAT"
    if [[ $opts == - ]]; then args=(); else read -ra args <<<"$opts"; fi
    revoke "$ISS" "$OUT/leaves/leaf$i.pem" "${args[@]}"
done

# 5. a CRL per CA (not needed by revd, handy for cross-checks)
for ((k = 1; k <= LEVELS; k++)); do
    run openssl ca -config "$OUT/ca$k/openssl.cnf" -batch -gencrl -out "$OUT/ca$k/crl.pem"
done

# 6. convenience files at the top of OUTDIR
cp "$OUT/ca1/ca.pem" "$OUT/root.pem"
cp "$ISS/ca.pem" "$OUT/issuing.pem"
cp "$ISS/ca.key" "$OUT/issuing.key"
cp "$ISS/ocsp.pem" "$OUT/ocsp.pem"
cp "$ISS/ocsp.key" "$OUT/ocsp.key"
for ((k = LEVELS; k >= 1; k--)); do cat "$OUT/ca$k/ca.pem"; done >"$OUT/chain.pem"
ln -s "ca$LEVELS/index.txt" "$OUT/index.txt"

# unissued_serial.txt: never issued, and not the next value of any serial file
while :; do
    new_serial hi16
    grep -qx "$SERIAL" "$OUT"/ca*/serial && continue
    grep -q "	$SERIAL	" "$OUT"/ca*/index.txt || break
done
echo "$SERIAL" >"$OUT/unissued_serial.txt"

{
    printf 'name\tserial_hex\tstatus\treason\tinvalidity\tcert\n'
    for ((i = 1; i <= LEAVES; i++)); do
        printf 'leaf%d\t%s\t%s\t%s\t%s\tleaves/leaf%d.pem\n' "$i" "${L_SERIAL[i]}" \
            "${L_STATUS[i]}" "${L_REASON[i]}" "${L_INVAL[i]}" "$i"
    done
} >"$OUT/manifest.tsv"

# 7. self-check: index.txt must say what the manifest says
for ((i = 1; i <= LEAVES; i++)); do
    line=$(awk -F'\t' -v s="${L_SERIAL[i]}" '$4 == s' "$ISS/index.txt")
    IFS=$'\t' read -r st _ rev _ <<<"$line"
    want=V
    [[ ${L_STATUS[i]} == revoked ]] && want=R
    [[ $st == "$want" ]] || fail "leaf$i (${L_SERIAL[i]}): index status '$st', want $want"
    if [[ $want == R && ! $rev =~ ^[0-9]{12}Z"${L_SUFFIX[i]}"$ ]]; then
        fail "leaf$i: index revocation field '$rev', want <time>${L_SUFFIX[i]}"
    fi
done
n=$(wc -l <"$ISS/index.txt")
((n == LEAVES + 1)) || fail "$ISS/index.txt has $n lines, want $((LEAVES + 1))"
run openssl verify -CAfile "$OUT/root.pem" -untrusted "$OUT/chain.pem" "$OUT/leaves/leaf1.pem"
run openssl verify -CAfile "$OUT/root.pem" -untrusted "$OUT/chain.pem" "$OUT/ocsp.pem"

rm -rf "$TMP"
echo "$ARGS_TXT" >"$OUT/args.txt"      # written last: marks the run complete
BUILDING=0

if ((!QUIET)); then
    nrev=$(grep -c $'\trevoked\t' "$OUT/manifest.tsv" || true)
    nexp=$(grep -c $'\texpired\t' "$OUT/manifest.tsv" || true)
    printf '%s: %s: %d-level %s PKI, %d leaves (%d good, %d revoked, %d expired) in %.1fs\n' \
        "$PROG" "$OUT" "$LEVELS" "$KEYTYPE" "$LEAVES" $((LEAVES - nrev - nexp)) "$nrev" "$nexp" \
        "$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
fi
