#!/usr/bin/env bash
# Create (once) the Python venv used by the interop clients in net/interop/ and install
# the pinned packages into it. Idempotent and quiet: prints the venv's python path as its
# last line. Venv: $OXW_INTEROP_VENV, default <repo>/target/interop-venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${OXW_INTEROP_VENV:-$repo/target/interop-venv}"
python="${PYTHON:-python3}"

# Exact pins (checked with CPython 3.11.7). The last three are noiseprotocol's
# dependencies (cryptography -> cffi -> pycparser), pinned so that runs are reproducible.
pins=(
  noiseprotocol==0.3.1
  websockets==17.4
  kcp==0.1.6
  lz4==4.4.5
  cryptography==51.0.1
  cffi==2.1.1
  pycparser==3.12
)

stamp="$venv/.oxw-interop-pins"
want="$(printf '%s\n' "${pins[@]}")"

if ! "$venv/bin/python" -c '' 2>/dev/null; then
  # Missing, or left over from a Python that is gone: (re)create it from scratch.
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv --clear "$venv" >/dev/null
fi

if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input "${pins[@]}" >&2
  # Fail here, not later, if an import does not work on this machine.
  "$venv/bin/python" -c 'import noise.connection, websockets.sync.client, kcp, lz4.block' >&2
  printf '%s\n' "$want" >"$stamp"
fi

echo "$venv/bin/python"
