#!/usr/bin/env bash
# End-to-end test of docker/Dockerfile and docker/compose.yaml, checked from outside the containers:
# a device with a birth certificate enrolls through the published port and its telemetry arrives;
# restarting the gateway container loses no enrolled device; `down` (keeping volumes) and `up`
# keep the site (same site CA) and the device reconnects with its operational certificate; the
# demo override's simulated devices enroll.
#
#   docker_test.sh BIN_DIR        BIN_DIR holds the host's edgetrust and edgetrust-device
#
# Runs its own dockerd (docker/local-engine) and exits 77 (skip) when no engine can run here.
# Environment: EDGETRUST_DOCKER_CACHE, EDGETRUST_DOCKER_FRESH (see docker/local-engine);
# EDGETRUST_DOCKER_IMAGE=NAME tests that image instead of building one;
# EDGETRUST_DOCKER_KEEP=1 keeps the work dir and engine for debugging.
set -euo pipefail

BIN=$(cd "${1:?usage: docker_test.sh BIN_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE=$SRC/docker/local-engine
COMPOSE_FILE=$SRC/docker/compose.yaml
DEADLINE=${EDGETRUST_DOCKER_DEADLINE:-2640}   # s; CTest's TIMEOUT is 2700
# Debian's 20.10 client and Compose v1, whatever else PATH holds.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
DOCKER=/usr/bin/docker

T0=$(date +%s)
say() { printf '[docker_test %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
skip() { say "SKIP: $*"; exit 77; }
fail() { say "FAIL: $*"; dump_logs; exit 1; }

# ---------------------------------------------------------------- preconditions (skip, not fail)
[ "$(id -u)" -eq 0 ] || skip "needs root to run its own dockerd"
for b in edgetrust edgetrust-device; do
  [ -x "$BIN/$b" ] || { say "FAIL: $BIN/$b is missing (build it first)"; exit 1; }
done
need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v mosquitto_sub >/dev/null || need_pkgs+=(mosquitto-clients)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need_pkgs[@]}"; } >/dev/null 2>&1 || skip "cannot install ${need_pkgs[*]}"
fi

W=$(mktemp -d /tmp/etdock.XXXXXX)
PROJECT=etdt$(basename "$W" | tr -dc 'a-z0-9' | tr 'A-Z' 'a-z')$$
IMAGE=edgetrust:test
export DOCKER_HOST=unix://$W/docker.sock
export COMPOSE_PROJECT_NAME=$PROJECT COMPOSE_FILE EDGETRUST_IMAGE=$IMAGE
ENGINE_STARTED=0

dc() { docker-compose --ansi never "$@"; }

dump_logs() {
  [ "$ENGINE_STARTED" = 1 ] || return 0
  say "---- docker-compose ps / logs"
  dc ps 2>&1 || true
  dc logs --no-color --tail 80 2>&1 || true
  for f in "$W"/*.log; do
    [ -f "$f" ] || continue
    case "$f" in */dockerd.log|*/build.log) continue ;; esac
    say "---- $f"; tail -n 40 "$f" || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${EDGETRUST_DOCKER_KEEP:-0}" = 1 ]; then
    say "kept $W (DOCKER_HOST=$DOCKER_HOST); stop with: $ENGINE stop $W"
    exit "$rc"
  fi
  [ -n "${DEVICE_PID:-}" ] && kill "$DEVICE_PID" 2>/dev/null || true
  [ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null || true
  if [ "$ENGINE_STARTED" = 1 ]; then
    dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
    # Keep the layer cache bounded; the tagged image and the build cache stay for the next run.
    $DOCKER image prune -f >/dev/null 2>&1 || true
    $DOCKER builder prune -f --keep-storage 6gb >/dev/null 2>&1 || true
  fi
  "$ENGINE" stop "$W" || true
  rm -rf "$W"
  say "done (exit $rc) in $(( $(date +%s) - T0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

# A watchdog outside CTest's process tree: ends the test before CTest's hard kill (which would skip
# the trap), and stops our dockerd if this script dies anyway.
MAIN_PID=$$
if [ "${EDGETRUST_DOCKER_KEEP:-0}" != 1 ]; then
  ( setsid bash -c '
      main=$1 w=$2 engine=$3 deadline=$4 start=$(date +%s)
      while kill -0 "$main" 2>/dev/null; do
        if [ $(( $(date +%s) - start )) -ge "$deadline" ]; then
          echo "[docker_test] deadline of $deadline s reached, stopping" >&2; kill -TERM "$main"
          sleep 30
        fi
        sleep 2
      done
      [ -d "$w" ] || exit 0
      docker-compose --ansi never down -v --remove-orphans -t 5
      "$engine" stop "$w"; rm -rf "$w"' _ "$MAIN_PID" "$W" "$ENGINE" "$DEADLINE" \
      </dev/null >/dev/null 2>&1 & )
fi

# ---------------------------------------------------------------- engine and base images
say "starting dockerd under $W"
if ! "$ENGINE" start "$W" >"$W/engine-start.log" 2>&1; then
  cat "$W/engine-start.log" >&2
  tail -n 20 "$W/dockerd.log" 2>/dev/null >&2 || true
  skip "dockerd cannot start here"
fi
ENGINE_STARTED=1
grep -v '^DOCKER_HOST=' "$W/engine-start.log" || true
if ! "$ENGINE" base-images >"$W/base-images.log" 2>&1; then
  cat "$W/base-images.log" >&2
  skip "cannot make the debian:bookworm base images (no Debian mirror?)"
fi
say "engine up, base images ready"

# ---------------------------------------------------------------- image
if [ -n "${EDGETRUST_DOCKER_IMAGE:-}" ]; then
  IMAGE=$EDGETRUST_DOCKER_IMAGE EDGETRUST_IMAGE=$EDGETRUST_DOCKER_IMAGE
  $DOCKER image inspect "$IMAGE" >/dev/null 2>&1 || fail "EDGETRUST_DOCKER_IMAGE=$IMAGE does not exist"
  say "using the image $IMAGE as built"
else
  say "building $IMAGE"
  if ! DOCKER_BUILDKIT=1 $DOCKER build --progress=plain -f "$SRC/docker/Dockerfile" -t "$IMAGE" "$SRC" \
       >"$W/build.log" 2>&1; then
    tail -n 60 "$W/build.log"
    fail "docker build failed"
  fi
  say "image built ($(grep -c ' CACHED$' "$W/build.log" || true) steps cached)"
fi

# ---------------------------------------------------------------- helpers
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

container() { dc ps -q "$1"; }

wait_healthy() {  # service…  (60 s each; `docker inspect` is fast, docker-compose is not)
  local svc id status end
  for svc in "$@"; do
    end=$(( $(date +%s) + 60 ))
    id=""
    while [ -z "$id" ]; do
      id=$(container "$svc")
      [ -n "$id" ] || [ "$(date +%s)" -lt "$end" ] || fail "$svc has no container"
      [ -n "$id" ] || sleep 0.5
    done
    while :; do
      status=$($DOCKER inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" \
               2>/dev/null || true)
      [ "${status#*/}" = healthy ] && break
      [ "$(date +%s)" -lt "$end" ] || fail "$svc not healthy after 60 s ($status)"
      sleep 0.2
    done
  done
}

site_file() { dc exec -T broker cat "/etc/edgetrust/$1"; }

fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }

# Subscribes as the gateway principal (the only role that may read device topics), so the real
# gateway is stopped meanwhile: two clients with one client id would take each other's session.
# Then runs the device for a few telemetry messages and expects one on et/<id>/up/#.
telemetry_arrives() {  # label
  local label=$1 i
  dc stop -t 10 gateway >/dev/null 2>&1 || fail "stop gateway"
  # Line-buffered, so SUBACK shows in the file while it runs.
  stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$PORT" -i edgetrust-gateway --cafile "$W/site-ca.pem" \
      --cert "$W/gateway.pem" --key "$W/gateway.key" -t "et/$DEVICE_ID/up/#" -C 1 -W 60 -v \
      >"$W/sub-$label.log" 2>&1 &
  SUB_PID=$!
  for i in $(seq 1 100); do
    grep -q SUBACK "$W/sub-$label.log" && break
    kill -0 "$SUB_PID" 2>/dev/null || { cat "$W/sub-$label.log"; fail "$label: subscriber as gateway refused"; }
    sleep 0.1
  done
  grep -q SUBACK "$W/sub-$label.log" || fail "$label: no SUBACK for the gateway principal"
  timeout 60 "$BIN/edgetrust-device" --broker "mqtts://127.0.0.1:$PORT" --ca "$W/site-ca.pem" \
      --birth-cert "$DEVICE_DIR/birth.pem" --birth-key "$DEVICE_DIR/birth.key" --state "$W/state" \
      --interval 1 --count 3 >"$W/device-$label.log" 2>&1 \
    || fail "$label: device did not publish its telemetry (see device-$label.log)"
  wait "$SUB_PID" || fail "$label: no telemetry of $DEVICE_ID arrived"
  SUB_PID=
  grep -q "^et/$DEVICE_ID/up/" "$W/sub-$label.log" || fail "$label: unexpected subscriber output"
  [ "$(sha256sum <"$W/state/operational.pem")" = "$OPERATIONAL_SHA" ] \
    || fail "$label: the device re-enrolled (its operational identity changed)"
  dc start gateway >/dev/null 2>&1 || fail "start gateway"
  wait_healthy gateway
  say "$label: telemetry of $DEVICE_ID arrived, same operational certificate"
}

# ---------------------------------------------------------------- site up
PORT=$(free_port)
export EDGETRUST_PORT=$PORT
say "docker-compose up (project $PROJECT, port $PORT)"
dc up -d >"$W/up.log" 2>&1 || { cat "$W/up.log"; fail "docker-compose up"; }
wait_healthy broker gateway
say "broker and gateway healthy"

for f in site-ca.pem gateway.pem gateway.key; do site_file "$f" >"$W/$f" || fail "copy $f out of the site volume"; done
chmod 600 "$W/gateway.key"
SITE_CA_FP=$(fingerprint "$W/site-ca.pem")

# ---------------------------------------------------------------- a manufacturer the site trusts
"$BIN/edgetrust" factory init --dir "$W/factory" --manufacturer acme >"$W/factory.log" 2>&1 \
  || fail "factory init"
"$BIN/edgetrust" factory provision --factory "$W/factory" --count 1 --prefix acme- --model thermo-1 \
    --out "$W/devices" >>"$W/factory.log" 2>&1 || fail "factory provision"
DEVICE_ID=acme-000001
DEVICE_DIR=$W/devices/$DEVICE_ID
[ -s "$DEVICE_DIR/birth.pem" ] || fail "no birth certificate for $DEVICE_ID"
dc exec -T broker sh -c 'cat >/tmp/acme-ca.pem' <"$W/factory/ca.pem" || fail "copy the acme CA in"
dc exec -T broker edgetrust site add-manufacturer --dir /etc/edgetrust --name acme --ca /tmp/acme-ca.pem \
    >"$W/add-manufacturer.log" 2>&1 || { cat "$W/add-manufacturer.log"; fail "site add-manufacturer"; }
# No restart: mosquitto's TLS layer finds the new CA in trust.d (capath), its plugin and the
# gateway reread the policy (now naming acme) on SIGHUP.
dc kill -s SIGHUP broker >/dev/null 2>&1 || fail "SIGHUP broker"
dc kill -s SIGHUP gateway >/dev/null 2>&1 || fail "SIGHUP gateway"
wait_healthy broker gateway
say "manufacturer acme added, broker and gateway reloaded (SIGHUP)"

# ---------------------------------------------------------------- enrollment through the published port
mkdir -p "$W/state"
timeout 90 "$BIN/edgetrust-device" --broker "mqtts://127.0.0.1:$PORT" --ca "$W/site-ca.pem" \
    --birth-cert "$DEVICE_DIR/birth.pem" --birth-key "$DEVICE_DIR/birth.key" --state "$W/state" \
    --exit-after-enroll >"$W/device-enroll.log" 2>&1 || fail "$DEVICE_ID did not enroll"
[ -s "$W/state/operational.pem" ] || fail "$DEVICE_ID enrolled but wrote no operational.pem"
OPERATIONAL_SHA=$(sha256sum <"$W/state/operational.pem")
say "$DEVICE_ID enrolled through 127.0.0.1:$PORT"

# ---------------------------------------------------------------- gateway restart keeps enrolled devices
dc restart -t 10 gateway >/dev/null 2>&1 || fail "restart gateway"
wait_healthy gateway
telemetry_arrives after-gateway-restart

# ---------------------------------------------------------------- down (volumes kept) and up keep the site
dc down -t 10 >"$W/down.log" 2>&1 || { cat "$W/down.log"; fail "docker-compose down"; }
dc up -d >"$W/up2.log" 2>&1 || { cat "$W/up2.log"; fail "docker-compose up (second)"; }
wait_healthy broker gateway
site_file site-ca.pem >"$W/site-ca-2.pem" || fail "copy site-ca.pem out again"
[ "$(fingerprint "$W/site-ca-2.pem")" = "$SITE_CA_FP" ] || fail "the site CA changed across down/up"
say "down/up kept the site (site CA $SITE_CA_FP)"
telemetry_arrives after-down-up

# ---------------------------------------------------------------- the demo override
export COMPOSE_FILE=$COMPOSE_FILE:$SRC/docker/compose.demo.yaml EDGETRUST_DEMO_DEVICES=3
dc up -d broker gateway >"$W/up-demo.log" 2>&1 || { cat "$W/up-demo.log"; fail "docker-compose up with the demo"; }
wait_healthy broker gateway
timeout 180 docker-compose --ansi never run --rm -T devices devices 3 --exit-after-enroll --duration 120 \
    --quiet >"$W/demo.log" 2>&1 || { tail -n 30 "$W/demo.log"; fail "demo devices did not enroll"; }
say "demo: 3 simulated devices enrolled"

say "PASS"
