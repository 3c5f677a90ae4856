#!/usr/bin/env bash
# Build the mstream_rhai extension (the Rhai engine of the udf provider, rust/mstream_rhai)
# with maturin and install it into a Python environment.
#
#   bash rust/install-rhai.sh [PYTHON]     (default: .venv/bin/python)
#
# Needs a Rust toolchain (cargo) and reaches crates.io for the crates and PyPI for maturin.
# Cargo's build folder (rust/mstream_rhai/target) is kept, so a rebuild takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs) to build the Rhai" \
         "engine; without it engine.kind = \"rhai\" is unavailable (Lua scripts still work)" >&2
    exit 1
fi
start=$(date +%s)
"$python" -m pip install -q ./rust/mstream_rhai
"$python" -c "import mstream_rhai" 
echo "mstream_rhai built and installed in $(( $(date +%s) - start )) s"
