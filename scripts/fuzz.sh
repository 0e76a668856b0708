#!/usr/bin/env bash
# Run every fuzz target (func FuzzXxx, found with `go test -list '^Fuzz'`) in the
# given packages (default ./...) for FUZZTIME each (default 10s), one at a time.
# New failing inputs land in the package's testdata/fuzz/ as usual: commit them.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
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
		if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
			failed+=("$pkg.$name")
		fi
	done
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
echo "fuzz: ok ($count targets, $FUZZTIME each)"
