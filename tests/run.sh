#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test
# (unit, golden packet fixtures, adm output, and the netns end-to-end tests,
# which need root). Usage: sudo tests/run.sh
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the end-to-end tests need root (network namespaces): sudo $0" >&2
    exit 1
fi
netns-lab/deps.sh
# One build shared by every test binary; the e2e tests use the same binary.
# Benchmarks run once each in test mode (criterion), doc examples, then every
# unit, golden and end-to-end test.
cargo test --bench pipeline --bench sched --no-fail-fast
cargo test --doc --no-fail-fast
cargo test --lib --bins --tests --no-fail-fast
