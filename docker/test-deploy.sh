#!/usr/bin/env bash
# `make test-deploy`: build the images with a real Docker engine and run the CPU compose profile, on this machine.
#
#  1. Installs what it needs (apt: docker.io, debootstrap, docker-compose) when it is missing.
#  2. Starts its own dockerd (host networking only: no bridge, no iptables) with its own socket, data root and
#     containerd namespace under $DEPLOY_STATE, and stops it by PID on the way out, failures included.
#  3. Builds a Debian bookworm base image with debootstrap + docker import (no registry is reachable), once per
#     machine: the image lives in the daemon's data root, with the build cache, between runs.
#  4. Lints every Dockerfile (hadolint); downloads each image's pinned wheels on the host (docker/wheels/LOCK) and
#     builds the lean critic and the CPU trainer images offline (--no-index) on that base.
#  5. Runs the CPU compose profile on 127.0.0.1: a curl critique through the critic container, the trainer
#     container's StepAlignFB steps against it, then `docker stop` of the critic (exit code and time).
#  6. Takes it all down (containers, volumes), keeping the images and the build cache for the next run, and writes
#     a report ($DEPLOY_STATE/report.txt): image sizes, build times, the curl output, the trainer's last lines.
#
# Needs root (dockerd). Environment: DEPLOY_STATE (default /var/tmp/stepalign-deploy); DEPLOY_GPU_IMAGES: 1 builds
# the CUDA trainer image too (2.7 GB of wheels, a 5.9 GB image), 0 does not, auto (default) does when the state
# folder's disk has 40 GB free; DEPLOY_REFRESH_BASE=1 rebuilds the base; DEPLOY_DEBIAN_MIRROR; PY (the Python with
# the project's dev tools; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${DEPLOY_STATE:-/var/tmp/stepalign-deploy}
PY=${PY:-.venv/bin/python}
VENV_BIN=$(dirname "$PY")
MIRROR=${DEPLOY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The docker.io package's CLI: the daemon's version, with BuildKit built in (a newer CLI elsewhere on PATH may
# need a buildx plugin that is not installed).
DOCKER=/usr/bin/docker
BASE_IMAGE=stepalign-base:bookworm
CRITIC_IMAGE=stepalign-critic:test
TRAINER_IMAGE=stepalign-trainer:cpu-test
TRAINER_GPU_IMAGE=stepalign-trainer:gpu-test
PROJECT=stepalign-deploy-test
# docker stop's grace period for the critic (SIGTERM, then SIGKILL). Keep it above the critic's drain timeout;
# compose.yaml's stop_grace_period (DEPLOY_STOP_GRACE) and the Kubernetes terminationGracePeriodSeconds follow it.
STOP_TIMEOUT=30
TRAIN_STEPS=3

LOGS=$STATE/logs
REPORT=$STATE/report.txt
export DOCKER_HOST=unix://$STATE/docker.sock DOCKER_BUILDKIT=1
DOCKERD_PID=""

say() { printf '\n=== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
report() { printf '%s\n' "$*" >>"$REPORT"; }
compose() { docker-compose -f docker/compose.yaml -p "$PROJECT" --profile cpu "$@"; }

if [ "$(id -u)" != 0 ]; then
    echo "make test-deploy starts its own dockerd and needs root (it runs as uid $(id -u))" >&2
    exit 2
fi
mkdir -p "$STATE" "$LOGS"
# One run at a time per state folder: two daemons cannot share a data root.
exec 9>"$STATE/lock"
flock -w 3600 9 || { echo "another make test-deploy holds $STATE/lock" >&2; exit 2; }
: >"$REPORT"
STARTED=$(now)

# --- 1. tools ---------------------------------------------------------------------------------------------------
need=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} (apt)"
    t0=$(now)
    apt-get update -q >"$LOGS/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$LOGS/apt.log" 2>&1 \
        || { tail -30 "$LOGS/apt.log"; exit 1; }
    report "apt-get install ${need[*]}: $(elapsed "$t0") s"
fi
for tool in hadolint; do
    [ -x "$VENV_BIN/$tool" ] || { echo "$VENV_BIN/$tool is missing: run make install" >&2; exit 2; }
done

# --- 2. our own dockerd -----------------------------------------------------------------------------------------
stop_dockerd() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    echo "dockerd $pid did not stop in 30 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$DOCKERD_PID" ]; then
        if [ "$rc" != 0 ]; then
            say "FAILED (exit $rc): container logs, then the daemon's"
            compose logs --no-color --tail 40 2>&1 | tail -80
            tail -20 "$LOGS/dockerd.log"
        fi
        compose down --volumes --remove-orphans --timeout 5 >>"$LOGS/compose.log" 2>&1
        # Anything else left in OUR daemon (an interrupted earlier step): containers, then unused volumes.
        $DOCKER ps -aq | xargs -r $DOCKER rm -f >/dev/null 2>&1
        $DOCKER volume prune -f >/dev/null 2>&1
        $DOCKER image prune -f >/dev/null 2>&1
        $DOCKER builder prune -f --keep-storage 20GB >/dev/null 2>&1  # the cache stays, bounded
        stop_dockerd "$DOCKERD_PID"
        wait "$DOCKERD_PID" 2>/dev/null
        # dockerd leaves its network namespace bind-mounted in the exec root; nothing else holds it now.
        mountpoint -q "$STATE/exec/netns/default" && umount "$STATE/exec/netns/default"
        echo "dockerd $DOCKERD_PID stopped"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -s "$STATE/dockerd.pid" ] && kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null \
    && grep -q dockerd "/proc/$(cat "$STATE/dockerd.pid")/cmdline" 2>/dev/null; then
    say "stopping a dockerd left over by an interrupted run (pid $(cat "$STATE/dockerd.pid"))"
    stop_dockerd "$(cat "$STATE/dockerd.pid")"
fi
say "starting dockerd (data root $STATE/data, socket $STATE/docker.sock)"
mkdir -p "$STATE/data" "$STATE/exec"
# setsid: its own session, so a Ctrl-C in the terminal reaches this script (which then cleans up), not the daemon.
setsid dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver=overlay2 \
    --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
    --containerd-namespace stepalign-deploy --containerd-plugins-namespace stepalign-deploy-plugins \
    -H "unix://$STATE/docker.sock" >"$LOGS/dockerd.log" 2>&1 9>&- &  # 9>&-: the daemon must not hold our lock
DOCKERD_PID=$!
for _ in $(seq 120); do
    $DOCKER info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$LOGS/dockerd.log"; exit 1; }
    sleep 0.5
done
$DOCKER info >/dev/null
[ "$(cat "$STATE/dockerd.pid")" = "$DOCKERD_PID" ] || { echo "dockerd pid mismatch" >&2; exit 1; }
echo "dockerd $($DOCKER version -f '{{.Server.Version}}') running, pid $DOCKERD_PID"
# Containers left by an interrupted run (this daemon is ours alone: nothing else runs here).
$DOCKER ps -aq | xargs -r $DOCKER rm -f >/dev/null
df -h "$STATE" | tail -1 | awk '{ print "disk: " $4 " free on " $6 }'

# --- 3. base image ----------------------------------------------------------------------------------------------
if [ "${DEPLOY_REFRESH_BASE:-0}" = 1 ] || ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "building $BASE_IMAGE: debootstrap --variant=minbase bookworm, then docker import"
    t0=$(now)
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase bookworm "$STATE/rootfs" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
        || { tail -30 "$LOGS/debootstrap.log"; exit 1; }
    # Security updates as well, so images built on this base get them from apt.
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
        "$MIRROR" "$MIRROR" >"$STATE/rootfs/etc/apt/sources.list"
    rm -rf "$STATE/rootfs/var/cache/apt/archives/"*.deb "$STATE/rootfs/var/lib/apt/lists/"*
    tar -C "$STATE/rootfs" -c . | $DOCKER import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$STATE/rootfs"
    report "base image: built in $(elapsed "$t0") s"
else
    report "base image: $BASE_IMAGE cached from an earlier run"
fi

# --- 4. lint, wheels, images ------------------------------------------------------------------------------------
say "hadolint docker/*.Dockerfile"
"$VENV_BIN/hadolint" docker/*.Dockerfile
echo "hadolint: no findings"
report "hadolint: docker/critic.Dockerfile docker/critic-vllm.Dockerfile docker/trainer.Dockerfile clean"
for profile in gpu cpu; do  # compose's own validation of both profiles (the gpu one is not run here)
    docker-compose -f docker/compose.yaml --profile "$profile" config -q
done
report "docker-compose config: profiles gpu and cpu valid"

GPU=${DEPLOY_GPU_IMAGES:-auto}
free_gb=$(df -BG --output=avail "$STATE" | tail -1 | tr -dc 0-9)
if [ "$GPU" = auto ]; then
    if [ "$free_gb" -ge 40 ]; then GPU=1; else GPU=0; fi
    echo "DEPLOY_GPU_IMAGES=auto: $free_gb GB free -> $GPU"
fi
wheels() {  # download the pinned wheels of the named locks on the host, timed
    local t0
    say "downloading the pinned wheels on the host: $*"
    t0=$(now)
    "$PY" docker/wheelhouse.py "$@"
    report "wheels for $* downloaded in $(elapsed "$t0") s"
}
wheels critic trainer-cpu

build() {  # build TAG DOCKERFILE [docker build args...]: offline, on the local base, timed
    local tag=$1 file=$2 log="$LOGS/build-${1//[:\/]/-}.log" t0
    shift 2
    say "docker build -f $file -t $tag $*"
    t0=$(now)
    set +e
    $DOCKER build --network host --progress plain --build-arg "BASE=$BASE_IMAGE" \
        --build-arg PIP_INSTALL_ARGS=--no-index -f "$file" -t "$tag" "$@" . 2>&1 \
        | tee "$log" | grep --line-buffered -E '^#[0-9]+ (\[[^]]+\]|DONE|CACHED|ERROR)' | cut -c1-150
    local rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] || { tail -40 "$log"; echo "docker build of $tag failed ($rc); log: $log" >&2; exit 1; }
    report "build $tag ($file $*): $(elapsed "$t0") s"
}
build "$CRITIC_IMAGE" docker/critic.Dockerfile
build "$TRAINER_IMAGE" docker/trainer.Dockerfile --build-arg LOCK=trainer-cpu
if [ "$GPU" = 1 ]; then
    wheels trainer-gpu  # after the CPU builds: their build context then holds no CUDA wheels yet
    build "$TRAINER_GPU_IMAGE" docker/trainer.Dockerfile --build-arg LOCK=trainer-gpu
    report "GPU images: $TRAINER_GPU_IMAGE built (its build checks torch.version.cuda; not run: no GPU here);" \
        "critic-vllm linted only (its base, vllm/vllm-openai, needs a registry)"
else
    report "GPU images: linted only ($free_gb GB free; DEPLOY_GPU_IMAGES=1 builds the CUDA trainer);" \
        "critic-vllm linted only (its base, vllm/vllm-openai, needs a registry)"
fi

say "each image holds only its half of the code"
$DOCKER run --rm --network none --entrypoint python "$CRITIC_IMAGE" -c "import importlib.util as u, sys
sys.exit([m for m in ('trainer', 'torch', 'transformers') if u.find_spec(m)] or None)"
$DOCKER run --rm --network none --entrypoint python "$TRAINER_IMAGE" -c "import importlib.util as u, sys
sys.exit([m for m in ('critic_service', 'fastapi', 'uvicorn') if u.find_spec(m)] or None)"
for image in "$CRITIC_IMAGE" "$TRAINER_IMAGE"; do
    [ "$($DOCKER image inspect -f '{{.Config.User}}' "$image")" = 10001:10001 ] || { echo "$image runs as root" >&2; exit 1; }
done
report "critic image: no trainer/torch/transformers; trainer image: no critic_service/fastapi/uvicorn; both uid 10001"

# --- 5. the CPU compose profile ---------------------------------------------------------------------------------
PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
export DEPLOY_CRITIC_IMAGE=$CRITIC_IMAGE DEPLOY_TRAINER_CPU_IMAGE=$TRAINER_IMAGE DEPLOY_CRITIC_PORT=$PORT
export DEPLOY_CPU_STEPS=$TRAIN_STEPS DEPLOY_STOP_GRACE=${STOP_TIMEOUT}s
compose down --volumes --remove-orphans >>"$LOGS/compose.log" 2>&1 || true

say "compose --profile cpu: the critic (checker engine) on 127.0.0.1:$PORT"
t0=$(now)
compose up -d --no-build critic-cpu >>"$LOGS/compose.log" 2>&1
CRITIC=$(compose ps -q critic-cpu)
health=""
for _ in $(seq 120); do
    health=$($DOCKER inspect -f '{{.State.Health.Status}}' "$CRITIC")
    [ "$health" = healthy ] && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$CRITIC")" = true ] || break
    sleep 1
done
[ "$health" = healthy ] || { echo "the critic container is $health, not healthy" >&2; exit 1; }
report "critic container healthy (HEALTHCHECK on /readyz) $(elapsed "$t0") s after compose up"

say "curl: one critique through the critic container"
curl -sS --fail-with-body -m 30 "http://127.0.0.1:$PORT/v1/critiques" -H 'Content-Type: application/json' -d '{
  "problem": "Start with 37. Add 48. Subtract 19. Multiply by 2. What is the result?",
  "reference_answer": "132",
  "student_solution": "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<step_3>67 * 2 = 134</step_3>\n<answer>\\boxed{134}</answer>"
}' >"$LOGS/curl.json"
"$PY" - "$LOGS/curl.json" <<'EOF' | tee -a "$REPORT"
import json, sys
c = json.load(open(sys.argv[1]))
assert (c["case"], c["pivotal_step"]) == ("D", 2), c
print(f"curl critique: case {c['case']}, pivotal step {c['pivotal_step']}, engine {c['meta']['engine']};",
      "notes:", "; ".join(f"step {v['step']}: {v['verdict']}" + (f" ({v['note']})" if v["note"] else "") for v in c["summary"]))
EOF

say "compose --profile cpu: the trainer ($TRAIN_STEPS StepAlignFB steps of a tiny Qwen3 against the critic)"
t0=$(now)
compose up --no-build --no-color trainer-cpu 2>&1 | tee "$LOGS/trainer.log" | grep -v -E '^\S+ +\| +\{' || true
TRAINER=$(compose ps -q trainer-cpu)
code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$TRAINER")
[ "$code" = 0 ] || { echo "the trainer container exited with $code" >&2; exit 1; }
grep -q "condition stepalign, $TRAIN_STEPS steps" "$LOGS/trainer.log" \
    || { echo "the trainer did not report $TRAIN_STEPS steps" >&2; exit 1; }
grep -q "rollouts without a valid critique: 0" "$LOGS/trainer.log" \
    || { echo "the trainer lacked critiques" >&2; exit 1; }
# the critic logs one JSON line per request: {"method": "POST", "path": "/v1/critiques", "status": 200, ...}
served=$($DOCKER logs "$CRITIC" 2>&1 | grep -c '"path": "/v1/critiques", "status": 200' || true)
[ "$served" -gt 1 ] || { echo "the critic container served no critiques to the trainer" >&2; exit 1; }
report "trainer container: exit 0 after $(elapsed "$t0") s (toy data + $TRAIN_STEPS steps); critic log: $served POST /v1/critiques"
report "trainer's last lines:"
sed -E 's/^\S+ +\| //' "$LOGS/trainer.log" | grep -E '^(run |critiques by case|distillation mask|last loss)' \
    | sed 's/^/    /' >>"$REPORT"

say "docker stop -t $STOP_TIMEOUT the critic"
t0=$(now)
$DOCKER stop -t "$STOP_TIMEOUT" "$CRITIC" >/dev/null
took=$(elapsed "$t0")
code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$CRITIC")
$DOCKER logs --tail 4 "$CRITIC" 2>&1 | sed 's/^/    /'
report "docker stop critic: exit code $code in $took s (timeout $STOP_TIMEOUT s)"
# 0: uvicorn's graceful shutdown (PID 1 has no default SIGTERM action to re-raise); 143 would be SIGTERM itself;
# 137 means the grace period ran out and the daemon killed it.
case "$code" in 0 | 143) ;; *) echo "the critic did not stop cleanly (exit $code)" >&2; exit 1 ;; esac

say "compose down"
compose down --volumes --remove-orphans >>"$LOGS/compose.log" 2>&1
left=$($DOCKER ps -aq | wc -l)
[ "$left" = 0 ] || { echo "$left containers left after compose down" >&2; exit 1; }

report "images:"
$DOCKER images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^stepalign-' | sort | sed 's/^/    /' >>"$REPORT"
report "make test-deploy: $(elapsed "$STARTED") s in all, up to here"
say "report ($REPORT)"
cat "$REPORT"
