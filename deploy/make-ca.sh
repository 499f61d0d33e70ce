#!/usr/bin/env bash
# Make a throw-away certificate authority and one certificate per kiok host, for trying TLS
# (compose.yaml, a test cluster). Not for production: the CA key sits next to the certificates
# and nothing revokes or renews them. Needs only openssl.
#
#   deploy/make-ca.sh [-d DIR] [-u UID] [-D DAYS] NAME...
#
# Writes DIR/ca.pem (what KIOK_TLS_CA and `kiok --ca` take), DIR/ca.key, and for each NAME
# DIR/NAME.crt + DIR/NAME.key (KIOK_TLS_CERT / KIOK_TLS_KEY). Each certificate names NAME,
# localhost and 127.0.0.1 (DNS and IP subject alternative names), so peers can dial NAME and a
# health check on the host itself verifies too; it serves both as a server and as a client
# certificate (a worker presents its own to the masters' internal port).
# Private keys are mode 0600; -u UID gives them to that user (as root), e.g. the uid the
# containers run as (10001 in the Dockerfile); without -u and not root, keys are made readable
# by all (0644) so a container user can read them: acceptable only for a throw-away CA.
# Existing files are kept: run it again with new names to add hosts to the same CA.
set -euo pipefail

dir=certs
owner=
days=825
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "d:u:D:h" opt; do
  case "$opt" in
    d) dir=$OPTARG ;;
    u) owner=$OPTARG ;;
    D) days=$OPTARG ;;
    h) usage 0 ;;
    *) usage 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -gt 0 ] || { echo "make-ca.sh: name at least one host (e.g. m1 m2 m3 w1 w2)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-ca.sh: openssl is not installed" >&2; exit 1; }
for name in "$@"; do
  case "$name" in
    ''|*[!A-Za-z0-9.-]*) echo "make-ca.sh: $name: a host name has only letters, digits, '.' and '-'" >&2; exit 2 ;;
  esac
done

umask 077
mkdir -p "$dir"

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days "$days" -subj "/CN=kiok throw-away CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  echo "made CA $dir/ca.pem"
fi

for name in "$@"; do
  if [ -f "$dir/$name.crt" ]; then
    echo "kept $dir/$name.crt"
    continue
  fi
  ext=$(mktemp)
  trap 'rm -f "$ext"' EXIT
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1
EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  echo "made $dir/$name.crt"
done

chmod 0755 "$dir"
chmod 0644 "$dir"/ca.pem "$dir"/*.crt
chmod 0600 "$dir"/ca.key
for name in "$@"; do
  if [ -n "$owner" ]; then
    chown "$owner" "$dir/$name.key"
  elif [ "$(id -u)" != 0 ]; then
    chmod 0644 "$dir/$name.key"
  fi
done
if [ -z "$owner" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "note: host keys are root's (0600); for containers running as another user pass -u UID" >&2
  else
    echo "note: host keys are readable by all (0644) so containers can read them; run as root with -u UID instead" >&2
  fi
fi
