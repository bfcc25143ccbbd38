#!/usr/bin/env bash
# One bounded libFuzzer run: run_fuzzer.sh FUZZER SEEDS WORKDIR SECONDS [libFuzzer flags...]
# New inputs go to WORKDIR/corpus (the committed SEEDS stay as they are), crashes to WORKDIR/;
# the last line names the run count. Exit status: libFuzzer's (0 when nothing was found).
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 seconds=$4
shift 4
mkdir -p "$work/corpus"
exec "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
