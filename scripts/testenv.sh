#!/usr/bin/env bash
# scripts/testenv.sh — the integration-test environment behind `make test` and .ci/run.
#
# Provisions real services on loopback, runs a command with them, and always tears
# them down:
#   - MinIO, built once from its Go module into the cache, started on a free
#     loopback port with a temporary data dir and random credentials;
#   - PostgreSQL (Debian's server binaries), a throwaway initdb cluster in a temp
#     dir, run as an unprivileged user, on a free loopback port, password auth;
#   - SoftHSM2: nothing to start; tests make their own tokens (internal/testenv).
# and exports, for the command:
#   TUFOTA_TEST_MINIO_ENDPOINT (host:port), TUFOTA_TEST_MINIO_ACCESS_KEY,
#   TUFOTA_TEST_MINIO_SECRET_KEY, TUFOTA_TEST_POSTGRES_URL (superuser URL),
#   TUFOTA_TEST_SOFTHSM_MODULE, TUFOTA_TEST_CHROMIUM and TUFOTA_TEST_AXE_CORE
#   (the web dashboard's browser test: Debian's chromium, and axe-core from npm,
#   cached), and for tests that need private instances
#   (fault tests that stop a server) TUFOTA_TEST_MINIO_BIN, TUFOTA_TEST_POSTGRES_BINDIR.
#
# Usage:
#   scripts/testenv.sh                   go test -race -count=1 -timeout 45m ./...
#   scripts/testenv.sh CMD [ARGS...]     run CMD instead (e.g. go test -run X ./storage/, or bash)
#   scripts/testenv.sh --install-only    install apt packages and build MinIO; start nothing
#
# Idempotent and rerunnable: apt packages are installed only when missing (with one
# `apt-get update` first), the MinIO binary is cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/tufota/bin and rebuilt only when its module version
# changes, and concurrent runs share the cache safely (flock) and use their own
# ports and temp dirs. Works without a TTY (CI=true). Set TUFOTA_TESTENV_KEEP=1 to
# keep the temp dir (service logs, data) after the run.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
PG_MAJOR=15
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
CHROMIUM=/usr/bin/chromium
AXE_VERSION=4.10.3

GO=${GO:-go}
cache=${TUFOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tufota}
minio_bin="$cache/bin/minio"
t0=$(date +%s)

log() { printf 'testenv: %s\n' "$*"; }
die() {
	printf 'testenv: ERROR: %s\n' "$*" >&2
	exit 1
}
now() { date +%s; }
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# as_root CMD...: runs CMD as root (directly, or through non-interactive sudo).
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "need root to run: $* (install it by hand, or run as root)"
	fi
}

# pg_bindir prints the directory holding PostgreSQL's server binaries
# (PG_MAJOR preferred, else the newest installed).
pg_bindir() {
	local d
	if [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ]; then
		echo "/usr/lib/postgresql/$PG_MAJOR/bin"
		return 0
	fi
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
		if [ -x "$d/initdb" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

missing_apt_packages() {
	local m=()
	{ [ -e "$SOFTHSM_MODULE" ] && command -v softhsm2-util >/dev/null 2>&1; } || m+=(softhsm2)
	pg_bindir >/dev/null || m+=(postgresql)
	command -v curl >/dev/null 2>&1 || m+=(curl)
	command -v flock >/dev/null 2>&1 || m+=(util-linux)
	[ -x "$CHROMIUM" ] || m+=(chromium)
	command -v npm >/dev/null 2>&1 || m+=(npm)
	echo "${m[*]}"
}

ensure_apt_packages() {
	local missing
	missing=$(missing_apt_packages)
	if [ -z "$missing" ]; then
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 || die "missing: $missing, and no apt-get to install it"
	mkdir -p "$cache"
	(
		# flock may itself be missing on an odd machine: then run unlocked.
		if command -v flock >/dev/null 2>&1; then flock 7; fi
		missing=$(missing_apt_packages) # another run may have installed them meanwhile
		if [ -n "$missing" ]; then
			local s
			s=$(now)
			log "apt: installing $missing (apt-get update first)"
			# shellcheck disable=SC2086 # word splitting of the package list is wanted
			as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update </dev/null >"$cache/apt.log" 2>&1 ||
				{ tail -20 "$cache/apt.log" >&2; die "apt-get update failed (log: $cache/apt.log)"; }
			# shellcheck disable=SC2086
			as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
				-o DPkg::Lock::Timeout=300 --no-install-recommends install $missing </dev/null >>"$cache/apt.log" 2>&1 ||
				{ tail -20 "$cache/apt.log" >&2; die "apt-get install $missing failed (log: $cache/apt.log)"; }
			log "apt: installed $missing in $(($(now) - s))s"
		fi
	) 7>"$cache/apt.lock"
	missing=$(missing_apt_packages)
	[ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# ensure_axe installs axe-core (pinned) with npm into the cache, once.
axe_js="$cache/npm/node_modules/axe-core/axe.min.js"
ensure_axe() {
	local have=
	[ -f "$cache/npm/node_modules/axe-core/package.json" ] &&
		have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$cache/npm/node_modules/axe-core/package.json")
	if [ "$have" = "$AXE_VERSION" ] && [ -s "$axe_js" ]; then
		log "axe-core: cached $AXE_VERSION"
		return 0
	fi
	mkdir -p "$cache/npm"
	(
		flock 8
		log "axe-core: npm install axe-core@$AXE_VERSION"
		npm install --prefix "$cache/npm" --no-audit --no-fund --no-save "axe-core@$AXE_VERSION" >"$cache/npm.log" 2>&1 ||
			{ tail -20 "$cache/npm.log" >&2; die "npm install axe-core@$AXE_VERSION failed (log: $cache/npm.log)"; }
	) 8>"$cache/npm.lock"
	[ -s "$axe_js" ] || die "axe-core: $axe_js missing after npm install"
}

# minio_cached succeeds when the cached binary was built from MINIO_VERSION.
minio_cached() {
	[ -x "$minio_bin" ] &&
		"$GO" version -m "$minio_bin" 2>/dev/null |
		awk -v m="$MINIO_MODULE" -v v="$MINIO_VERSION" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }'
}

ensure_minio() {
	if minio_cached; then
		log "minio: cached binary $minio_bin ($MINIO_VERSION)"
		return 0
	fi
	mkdir -p "$cache/bin"
	(
		flock 8
		if minio_cached; then exit 0; fi # built by a concurrent run while we waited
		local s tmp
		s=$(now)
		log "minio: building $MINIO_MODULE@$MINIO_VERSION (once; about 6 minutes on 2 cores)"
		tmp=$(mktemp -d "$cache/minio-build.XXXXXX")
		if ! (cd "$tmp" && GOBIN="$tmp" GOFLAGS='' CGO_ENABLED=0 "$GO" install "$MINIO_MODULE@$MINIO_VERSION") \
			</dev/null >"$cache/minio-build.log" 2>&1; then
			rm -rf "$tmp"
			tail -30 "$cache/minio-build.log" >&2
			die "minio build failed (log: $cache/minio-build.log)"
		fi
		mv -f "$tmp/minio" "$minio_bin"
		rm -rf "$tmp"
		log "minio: built in $(($(now) - s))s -> $minio_bin"
	) 8>"$cache/minio.lock"
	minio_cached || die "minio: $minio_bin is not the $MINIO_VERSION build"
}

# free_port prints a loopback TCP port nobody listens on, below Linux's ephemeral
# range. Services are still retried on another port if they fail to bind.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free loopback port found"
}

# ---- provisioning -----------------------------------------------------------

install_only=false
if [ "${1:-}" = "--install-only" ]; then
	install_only=true
	shift
fi
if [ $# -eq 0 ]; then
	set -- "$GO" test -race -count=1 -timeout 45m ./...
fi

command -v "$GO" >/dev/null 2>&1 || die "$GO not found in PATH"
ensure_apt_packages
ensure_minio
ensure_axe
pgbin=$(pg_bindir)
log "softhsm2: module $SOFTHSM_MODULE ($(softhsm2-util --version 2>/dev/null || echo '?'))"
if $install_only; then
	log "installed (minio $MINIO_VERSION, postgresql $("$pgbin/postgres" --version | awk '{print $3}'), softhsm2) in $(($(now) - t0))s"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tufota-testenv.XXXXXX")
chmod 0755 "$work" # the PostgreSQL user must reach its cluster below
minio_pid=
pg_data=
pg_user=
cmd_pid=

pg_run() { # runs a PostgreSQL binary as the unprivileged cluster owner
	if [ -n "$pg_user" ]; then
		runuser -u "$pg_user" -- "$@"
	else
		"$@"
	fi
}

stop_minio() {
	[ -n "$minio_pid" ] || return 0
	kill "$minio_pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$minio_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$minio_pid" 2>/dev/null || true
	wait "$minio_pid" 2>/dev/null || true
	minio_pid=
}

# shellcheck disable=SC2317 # called from the EXIT trap
stop_postgres() {
	[ -n "$pg_data" ] || return 0
	if [ -f "$pg_data/postmaster.pid" ]; then
		pg_run "$pgbin/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			pg_run "$pgbin/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	fi
	pg_data=
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [ -n "$cmd_pid" ] && kill -0 "$cmd_pid" 2>/dev/null; then
		log "stopping the command (process group $cmd_pid)"
		kill -TERM -- "-$cmd_pid" 2>/dev/null
		for _ in $(seq 1 100); do
			kill -0 "$cmd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$cmd_pid" 2>/dev/null
		wait "$cmd_pid" 2>/dev/null
	fi
	stop_minio
	stop_postgres
	if [ "${TUFOTA_TESTENV_KEEP:-}" = 1 ]; then
		log "kept $work (TUFOTA_TESTENV_KEEP=1)"
	else
		rm -rf "$work"
	fi
	log "services stopped; exit $rc"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_minio() {
	local attempt port s
	s=$(now)
	local access secret
	access="tufota$(rand_hex 8)"
	secret=$(rand_hex 24)
	mkdir -p "$work/minio/data"
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		MINIO_ROOT_USER="$access" MINIO_ROOT_PASSWORD="$secret" \
			MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
			"$minio_bin" server --quiet --anonymous --address "127.0.0.1:$port" "$work/minio/data" \
			</dev/null >"$work/minio/log" 2>&1 &
		minio_pid=$!
		for _ in $(seq 1 600); do # up to 60s
			kill -0 "$minio_pid" 2>/dev/null || break
			# Ready, and ours: a request signed with our random credentials (a
			# server that another run started on the same port would refuse it).
			if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/minio/health/ready" 2>/dev/null &&
				printf 'user = "%s:%s"\n' "$access" "$secret" |
				curl -fsS -o /dev/null --max-time 5 -K - --aws-sigv4 "aws:amz:us-east-1:s3" "http://127.0.0.1:$port/" 2>/dev/null &&
				kill -0 "$minio_pid" 2>/dev/null; then
				export TUFOTA_TEST_MINIO_ENDPOINT="127.0.0.1:$port"
				export TUFOTA_TEST_MINIO_ACCESS_KEY="$access"
				export TUFOTA_TEST_MINIO_SECRET_KEY="$secret"
				export TUFOTA_TEST_MINIO_BIN="$minio_bin"
				log "minio: ready at 127.0.0.1:$port in $(($(now) - s))s (pid $minio_pid, data $work/minio/data)"
				return 0
			fi
			sleep 0.1
		done
		log "minio: not ready on port $port (attempt $attempt); log:"
		tail -15 "$work/minio/log" | sed 's/^/  | /'
		stop_minio
		rm -rf "$work/minio/data" && mkdir -p "$work/minio/data"
	done
	die "minio: could not start"
}

start_postgres() {
	local s attempt port password dir
	s=$(now)
	dir="$work/postgres"
	mkdir -p "$dir/sock"
	if is_root; then # initdb refuses to run as root
		pg_user=postgres
		if ! id "$pg_user" >/dev/null 2>&1; then
			pg_user=tufota-pg
			id "$pg_user" >/dev/null 2>&1 ||
				useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
		fi
		chown -R "$pg_user" "$dir"
	fi
	password=$(rand_hex 16)
	(umask 077 && echo "$password" >"$dir/pwfile")
	[ -z "$pg_user" ] || chown "$pg_user" "$dir/pwfile"
	pg_data="$dir/data"
	if ! pg_run "$pgbin/initdb" -D "$pg_data" -U postgres --pwfile="$dir/pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
		</dev/null >"$dir/initdb.log" 2>&1; then
		tail -20 "$dir/initdb.log" >&2
		pg_data=
		die "postgres: initdb failed"
	fi
	rm -f "$dir/pwfile"
	# Loopback TCP only, socket in our temp dir; durability settings off: a
	# throwaway cluster (a killed server process still loses nothing).
	cat >>"$pg_data/postgresql.conf" <<EOF

# tufota testenv
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		if pg_run "$pgbin/pg_ctl" -D "$pg_data" -l "$dir/log" -w -t 60 -o "-p $port" start \
			</dev/null >/dev/null 2>&1 &&
			pg_run "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10; then
			export TUFOTA_TEST_POSTGRES_URL="postgres://postgres:$password@127.0.0.1:$port/postgres?sslmode=disable"
			export TUFOTA_TEST_POSTGRES_BINDIR="$pgbin"
			log "postgres: ready at 127.0.0.1:$port in $(($(now) - s))s ($("$pgbin/postgres" --version), cluster $pg_data, user $(pg_run id -un))"
			return 0
		fi
		log "postgres: not ready on port $port (attempt $attempt); log:"
		tail -15 "$dir/log" 2>/dev/null | sed 's/^/  | /'
		pg_run "$pgbin/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	done
	die "postgres: could not start"
}

start_minio
start_postgres
export TUFOTA_TEST_SOFTHSM_MODULE="$SOFTHSM_MODULE"
export TUFOTA_TEST_CHROMIUM="$CHROMIUM" TUFOTA_TEST_AXE_CORE="$axe_js"
log "provisioned in $(($(now) - t0))s; running: $*"

s=$(now)
rc=0
if [ -t 0 ]; then
	# Interactive (e.g. scripts/testenv.sh bash): a foreground child on the
	# terminal; Ctrl-C reaches it and us through the terminal's process group.
	"$@" || rc=$?
else
	# No terminal (CI): the command runs in its own process group and we wait for
	# it, so a signal to this script runs the trap at once and is passed on to
	# the whole group (go test and its test binaries) before services stop.
	setsid "$@" &
	cmd_pid=$!
	wait "$cmd_pid" || rc=$?
	cmd_pid=
fi
log "command finished in $(($(now) - s))s with exit $rc: $*"
exit "$rc"
