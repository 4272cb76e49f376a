#!/usr/bin/env bash
# End-to-end test of the container deployment: builds release binaries and
# the image, starts the reference topology (docker/compose.yaml), then
#   1. writes records over mutual TLS (certificates from `holdfast certs`);
#   2. kills both ua-kyiv nodes: writes and linearizable reads go on;
#   3. restarts them: they catch up;
#   4. cuts eu-amsterdam off every network: the rest goes on working;
#   5. reconnects it: it catches up;
#   6. checks that bad input (malformed config, missing key file) makes a
#      container exit non-zero with one clear line;
# and tears everything down (containers, networks, volumes, the test image)
# whatever happens. Exits non-zero on the first failed check.
#
# Needs a Docker Engine with Compose (`docker compose` or `docker-compose`)
# and debian:bookworm-slim (docker/base-image.sh makes it offline).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

PROJECT="holdfast-e2e-$$"
IMAGE="holdfast:e2e-$$"
HOST_ENDPOINTS="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005"
NODE_ENDPOINTS="n1:7000,n2:7000,n3:7000,n4:7000,n5:7000"
# Bounds for the waits below: elections take about a second, a container's
# health check needs up to three 5-second probes to change its verdict.
HEALTHY_TIMEOUT_S=120
RECOVERY_TIMEOUT_S=60

say() { printf 'docker/test: %s\n' "$*"; }
fail() {
    printf 'docker/test: FAILED: %s\n' "$*" >&2
    exit 1
}

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    fail "neither 'docker compose' nor 'docker-compose' is installed"
fi

WORK=$(mktemp -d)
cleanup() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        say "logs of the failed run (last 40 lines per node):"
        compose logs --no-color --tail 40 2>&1 || true
    fi
    say "tearing down"
    compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT

compose() {
    HOLDFAST_IMAGE="$IMAGE" HOLDFAST_MASTER_KEY="$WORK/master.key" HOLDFAST_TLS_DIR="$WORK/tls" \
        "${COMPOSE[@]}" --project-name "$PROJECT" --file "$ROOT/docker/compose.yaml" "$@"
}

# --- build --------------------------------------------------------------
# The prebuilt RocksDB (cargo xtask deps) keeps this a link, not a C++ build.
if [[ -z "${ROCKSDB_LIB_DIR:-}" ]]; then
    eval "$(cargo xtask env)"
fi
say "building release binaries"
cargo build --release --quiet -p holdfast -p holdfastctl
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
CTL="$BIN/holdfastctl"

docker/base-image.sh
say "building image $IMAGE"
mkdir -p "$WORK/context/bin"
cp docker/Dockerfile "$WORK/context/"
cp "$BIN/holdfast" "$BIN/holdfastctl" "$WORK/context/bin/"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$WORK/context" >/dev/null

# A fresh 256-bit master key, readable only by the image's holdfast user.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/master.key"
echo >>"$WORK/master.key"
if [[ $(id -u) -eq 0 ]]; then
    chown 10001:10001 "$WORK/master.key"
    chmod 0400 "$WORK/master.key"
else
    chmod 0444 "$WORK/master.key"
fi

# The cluster's certificates: one per node (named by its compose hostname),
# and an admin client certificate for holdfastctl. Mounted read-only.
"$BIN/holdfast" certs init --out "$WORK/tls" --nodes 1=n1,2=n2,3=n3,4=n4,5=n5 --clients admin >/dev/null
if [[ $(id -u) -eq 0 ]]; then
    chown -R 10001:10001 "$WORK/tls"
else
    chmod 0444 "$WORK"/tls/*.key
fi

# --- helpers ------------------------------------------------------------
# The workload's client runs in a throwaway container on the "wan" network:
# followers name the leader by its advertised compose hostname (n5:7000),
# which resolves there but not on the host. From the host the client gives
# up on such a hint instead of trying its other endpoints (see README), so
# the host-side checks below use requests that need no leader.
ctl() {
    docker run --rm --network "${PROJECT}_wan" -v "$WORK/tls:/etc/holdfast/tls:ro" \
        -e HOLDFAST_CACERT=/etc/holdfast/tls/ca.pem -e HOLDFAST_CERT=/etc/holdfast/tls/admin.pem \
        -e HOLDFAST_KEY=/etc/holdfast/tls/admin.key --entrypoint holdfastctl "$IMAGE" \
        --endpoints "$NODE_ENDPOINTS" --timeout 3s "$@"
}
host_ctl() {
    "$CTL" --cacert "$WORK/tls/ca.pem" --cert "$WORK/tls/admin.pem" --key "$WORK/tls/admin.key" \
        --endpoints "$HOST_ENDPOINTS" --timeout 3s "$@"
}
cid() { compose ps -q "$1"; }
health_of() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(cid "$1")"; }

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND once a second.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for: $what"
        sleep 1
    done
}

is_health() { [[ $(health_of "$1") == "$2" ]]; }
all_healthy() {
    local n
    for n in "$@"; do is_health "$n" healthy || return 1; done
}

# A node-local stale read, from inside the container (works whatever the
# port publishing state): proves that node has applied the record.
has_record() {
    local node=$1 id=$2 value=$3
    docker exec "$(cid "$node")" holdfastctl --endpoints 127.0.0.1:7000 --timeout 2s \
        --cert /etc/holdfast/tls/admin.pem --key /etc/holdfast/tls/admin.key \
        get --stale passports "$id" | grep -- "$value" >/dev/null
}

put() { ctl put passports "$1" "$2" --reason e2e --actor docker-test >/dev/null; }
# grep reads to the end (no -q): under pipefail an early exit could fail
# the writer with SIGPIPE.
get_linear() { ctl get passports "$1" | grep -- "$2" >/dev/null; }

# --- 1. up and write ----------------------------------------------------
say "starting the cluster (project $PROJECT)"
compose up -d >/dev/null
wait_for "$HEALTHY_TIMEOUT_S" "all five nodes healthy" all_healthy n1 n2 n3 n4 n5
say "all nodes healthy"

for i in $(seq 1 10); do put "P-$i" "v$i" || fail "write P-$i"; done
get_linear P-10 v10 || fail "linearizable read of P-10"
curl_metrics() { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3; }
metrics=$(curl_metrics 9103) || fail "n3 /metrics did not answer"
grep '^holdfast_ready 1' >/dev/null <<<"$metrics" || fail "n3 /metrics does not report ready"
host_ctl endpoint status >"$WORK/status" || fail "holdfastctl on the host: endpoint status"
[[ $(grep -c ' n[1-5]:7000 ' "$WORK/status") -eq 5 ]] || fail "not all five nodes answered the host: $(cat "$WORK/status")"
host_ctl get --stale passports P-10 | grep v10 >/dev/null || fail "holdfastctl on the host: read P-10"
"$CTL" --endpoints 127.0.0.1:7003 --timeout 3s --max-retries 0 get --stale passports P-10 >/dev/null 2>&1 &&
    fail "a plaintext client was served"
say "wrote 10 records over mutual TLS; the host reaches every node; plaintext is refused; metrics report ready"

# --- 2. lose ua-kyiv ----------------------------------------------------
say "killing both ua-kyiv nodes (n1, n2)"
docker kill "$(cid n1)" "$(cid n2)" >/dev/null
wait_for "$RECOVERY_TIMEOUT_S" "a write with ua-kyiv down" put K-0 down0
for i in $(seq 1 10); do put "K-$i" "down$i" || fail "write K-$i with ua-kyiv down"; done
get_linear P-5 v5 || fail "linearizable read of P-5 with ua-kyiv down"
get_linear K-10 down10 || fail "linearizable read of K-10 with ua-kyiv down"
say "writes and linearizable reads go on without ua-kyiv"

# --- 3. bring ua-kyiv back ----------------------------------------------
say "restarting n1, n2"
docker start "$(cid n1)" "$(cid n2)" >/dev/null
wait_for "$HEALTHY_TIMEOUT_S" "n1 and n2 healthy again" all_healthy n1 n2
wait_for "$RECOVERY_TIMEOUT_S" "n1 caught up" has_record n1 K-10 down10
wait_for "$RECOVERY_TIMEOUT_S" "n2 caught up" has_record n2 K-10 down10
say "ua-kyiv caught up"

# --- 4. partition eu-amsterdam ------------------------------------------
N5=$(cid n5)
say "disconnecting n5 (eu-amsterdam) from every network"
for net in eu-amsterdam wan; do docker network disconnect "${PROJECT}_$net" "$N5"; done
# If n5 led, the others need an election timeout to replace it.
wait_for "$RECOVERY_TIMEOUT_S" "a write with eu-amsterdam cut off" put A-0 cut0
for i in $(seq 1 10); do put "A-$i" "cut$i" || fail "write A-$i with eu-amsterdam cut off"; done
get_linear A-10 cut10 || fail "linearizable read with eu-amsterdam cut off"
# Cut off, n5 loses its leader and its health check must say so.
wait_for "$RECOVERY_TIMEOUT_S" "n5 reported unhealthy while cut off" is_health n5 unhealthy
has_record n5 A-10 cut10 && fail "n5 applied a write while cut off"
say "the rest works without eu-amsterdam; n5 reports itself not ready"

# --- 5. reconnect -------------------------------------------------------
say "reconnecting n5"
# Compose's service-name alias is per network; re-adding it keeps `n5:7000`
# (the address in the membership) resolvable for the peers.
for net in eu-amsterdam wan; do docker network connect --alias n5 "${PROJECT}_$net" "$N5"; done
wait_for "$HEALTHY_TIMEOUT_S" "n5 healthy again" all_healthy n5
wait_for "$RECOVERY_TIMEOUT_S" "n5 caught up" has_record n5 A-10 cut10
put Z-1 final || fail "write after reconnect"
say "eu-amsterdam caught up"

# --- 6. bad input -------------------------------------------------------
# Each must exit non-zero at once with exactly one line on stderr.
bad_input() {
    local what=$1
    shift
    local err status=0
    err=$(docker run --rm "$@" "$IMAGE" serve 2>&1 >/dev/null) || status=$?
    [[ $status -ne 0 ]] || fail "$what: container exited 0"
    [[ $(printf '%s\n' "$err" | wc -l) -eq 1 ]] || fail "$what: expected one line, got: $err"
    say "$what -> exit $status: $err"
}
printf 'id = "not a number"\n' >"$WORK/malformed.toml"
chmod 0444 "$WORK/malformed.toml"
bad_input "malformed config" -v "$WORK/malformed.toml:/etc/holdfast/holdfast.toml:ro"
bad_input "missing config" -e HOLDFAST_CONFIG=/etc/holdfast/absent.toml
bad_input "missing key file" -v "$ROOT/docker/config/n1.toml:/etc/holdfast/holdfast.toml:ro"
bad_input "missing TLS files" -v "$ROOT/docker/config/n1.toml:/etc/holdfast/holdfast.toml:ro" \
    -v "$WORK/master.key:/etc/holdfast/master.key:ro"

# --- teardown check -----------------------------------------------------
compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
label="label=com.docker.compose.project=$PROJECT"
[[ -z $(docker ps -aq --filter "$label") ]] || fail "containers left behind"
[[ -z $(docker network ls -q --filter "$label") ]] || fail "networks left behind"
[[ -z $(docker volume ls -q --filter "$label") ]] || fail "volumes left behind"
say "PASSED"
