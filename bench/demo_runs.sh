#!/usr/bin/env bash
# Runs `stateful-route demo` 50 times, two at a time: seeds 1-25 at --duration 20, seeds 26-50 at the
# default duration. Prints each failing seed with its replay command, then "N passed, N failed".
set -uo pipefail
cli="${1:-.venv/bin/stateful-route}"
logs="$(mktemp -d)"
one() {
  local seed=$1 duration=()
  [ "$seed" -le 25 ] && duration=(--duration 20)
  if "$cli" demo "${duration[@]}" --seed "$seed" --json >"$logs/$seed.json" 2>"$logs/$seed.err"; then
    echo "pass $seed"
  else
    echo "fail $seed: $cli demo ${duration[*]} --seed $seed  (output: $logs/$seed.json)"
  fi
}
export -f one
export cli logs
results="$(seq 1 50 | xargs -P 2 -I{} bash -c 'one {}')"
grep '^fail' <<<"$results"
passed=$(grep -c '^pass' <<<"$results")
failed=$(grep -c '^fail' <<<"$results")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
