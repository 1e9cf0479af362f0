#!/bin/sh
# One WebSocket connection on stdin/stdout: the handshake, a first text frame naming the
# request's path, then every client frame (unfragmented, under 126 bytes) echoed back.
IFS= read -r request
path=$(printf '%s' "$request" | cut -d' ' -f2)
key=""
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
  esac
done
accept=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | sha1sum | cut -d' ' -f1 | xxd -r -p | base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
first="path:$path"
printf "\\201\\$(printf '%03o' ${#first})%s" "$first"
while :; do
  set -- $(dd bs=1 count=2 2>/dev/null | od -An -tu1 -v)
  [ $# -lt 2 ] && exit 0
  op=$(( $1 & 15 )); len=$(( $2 & 127 ))
  if [ $op -eq 8 ]; then printf '\210\000'; exit 0; fi
  [ $len -ge 126 ] && exit 1
  set -- $(dd bs=1 count=$((4 + len)) 2>/dev/null | od -An -tu1 -v)
  m0=$1; m1=$2; m2=$3; m3=$4; shift 4
  out=""; i=0
  for b in "$@"; do
    case $((i % 4)) in 0) m=$m0 ;; 1) m=$m1 ;; 2) m=$m2 ;; *) m=$m3 ;; esac
    out="$out\\$(printf '%03o' $((b ^ m)))"
    i=$((i + 1))
  done
  printf "\\$(printf '%03o' $((128 | op)))\\$(printf '%03o' $len)$out"
done
