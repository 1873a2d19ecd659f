#!/usr/bin/env bash
# The accelerator checks in one run (see experiments/gpu_bench.py): one table on stdout, gpu_bench.json in
# --out (default $OUT, else the current folder). Installs nothing: `morl` with its mujoco extra must import.
# On the device machine: install the wheel into a --target folder, put it on PYTHONPATH, then run this.
set -euo pipefail
exec python3 -P "$(dirname "$0")/gpu_bench.py" "$@"
