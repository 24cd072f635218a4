#!/usr/bin/env bash
# Edge install check: a fresh venv with `pip install <repo>` (no extras), then `cnnedge serve`.
# Prints: TensorFlow/tf2onnx/onnx absent, size on disk, time to ready, resident memory.
#
#   benchmarks/edge_install.sh [PACKAGE_DIR]      (default models/seed, exported)
#
# Goals (issue 4): no TensorFlow, tf2onnx or onnx installed; < 250 MB on disk; ready < 2 s;
# RSS < 200 MB while serving.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PKG="$(realpath "${1:-$REPO/models/seed}")"
PYTHON="${PYTHON:-python3}"
VENV="$(mktemp -d /tmp/cnnedge-edge.XXXXXX)"
trap 'kill "${PID:-}" 2>/dev/null || true; [ -n "${KEEP_VENV:-}" ] || rm -rf "$VENV"' EXIT

[ -f "$PKG/model.onnx" ] || { echo "error: $PKG/model.onnx is missing; run cnnedge train and cnnedge export" >&2; exit 1; }

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$REPO"

echo "== edge install in $VENV (python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
for dist in tensorflow tensorflow-cpu keras tf2onnx onnx; do
    if "$VENV/bin/pip" show --quiet "$dist" >/dev/null 2>&1; then
        echo "FAIL: $dist is installed"; exit 1
    fi
done
echo "not installed: tensorflow, keras, tf2onnx, onnx"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "size on disk: venv $(du -sm "$VENV" | cut -f1) MB (site-packages $(du -sm "$SITE" | cut -f1) MB; pip and setuptools included)"
echo "largest: $(du -sm "$SITE"/* | sort -rn | head -4 | awk '{printf "%s %s MB, ", $2, $1}' | sed "s|$SITE/||g; s|, $||")"

OUT="$VENV/serve.out"
START=$(date +%s.%N)
"$VENV/bin/cnnedge" serve "$PKG" --port 0 --no-access-log >"$OUT" 2>"$VENV/serve.err" &
PID=$!
URL=""
for _ in $(seq 1 300); do
    URL="$(grep -so 'listening on http://[^ ]*' "$OUT" | cut -d' ' -f3 || true)"
    if [ -n "$URL" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v2/health/ready")" = 200 ]; then
        break
    fi
    sleep 0.01
done
END=$(date +%s.%N)
[ -n "$URL" ] || { echo "FAIL: server did not start"; cat "$VENV/serve.err"; exit 1; }
echo "ready in $(echo "$END - $START" | bc -l | xargs printf '%.2f') s (launch to /v2/health/ready 200)"

# Serve some real requests (binary, batches of 1 and 32) before reading the memory figures.
"$VENV/bin/python" - "$URL" <<'EOF'
import json, sys, urllib.request
import numpy as np
url = sys.argv[1]
for n in [1] * 200 + [32] * 20:
    x = np.random.default_rng(n).random((n, 28, 28, 1), dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    req = urllib.request.Request(url + "/v2/models/seed/infer", data=head + x.tobytes(),
                                 headers={"Inference-Header-Content-Length": str(len(head))})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200
print("served 200 requests of 1 image and 20 of 32")
EOF
RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
echo "resident memory: $((RSS / 1024)) MB now, $((HWM / 1024)) MB peak"
if grep -q tensorflow /proc/$PID/maps; then echo "FAIL: a TensorFlow library is mapped"; exit 1; fi
kill -TERM $PID
wait $PID && echo "SIGTERM: exit 0" || echo "SIGTERM: exit $?"
PID=""
