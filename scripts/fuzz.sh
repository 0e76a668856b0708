#!/usr/bin/env bash
# Run every fuzz target (func FuzzXxx, found with `go test -list '^Fuzz'`) in the
# given packages (default ./...) for FUZZTIME each, one at a time.
# New failing inputs land in the package's testdata/fuzz/ as usual: commit them.
#
# FUZZTIME is a go test -fuzztime value. The default is a count of executions
# (20000x), not a duration: on Go 1.26 a duration-based -fuzztime can end with a
# spurious "context deadline exceeded" when the deadline fires while a worker is
# mid-call (golang/go#75804, fixed in Go 1.27), which made short runs fail at
# random under load. A count has no deadline to race; FUZZ_TIMEOUT (go test
# -timeout, default 5m per target) still bounds the wall time of each target.
# New interesting inputs are minimised for at most 100 executions each (the
# default, 60s each, can stall a target for minutes on large seeds).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20000x}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-5m}
[ $# -gt 0 ] || set -- ./...

failed=()
count=0
pkgs=$("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "$@")
for pkg in $pkgs; do
	if ! list=$("$GO" test -list '^Fuzz' "$pkg" 2>&1); then
		echo "$list"
		echo "fuzz: $pkg: cannot list fuzz targets (does it build?)"
		failed+=("$pkg")
		continue
	fi
	for name in $(grep -E '^Fuzz[A-Za-z0-9_]*$' <<<"$list" || true); do
		count=$((count + 1))
		echo "== fuzz: $pkg $name for $FUZZTIME"
		if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 100x -timeout "$FUZZ_TIMEOUT" "$pkg"; then
			failed+=("$pkg.$name")
		fi
	done
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
echo "fuzz: ok ($count targets, $FUZZTIME each, $SECONDS s)"
