#!/usr/bin/env bash
# A throw-away clamd for the tests (pec/clamd and whatever scans mail): its
# own configuration, sockets and log under DIR, and a signature database of
# one line that detects the EICAR test file and nothing else. There is no
# internet here: never run freshclam; none of this needs it.
#
#   eval "$(scripts/clamd.sh start DIR)"   # start, export CUSTODE_TEST_CLAMD_*
#   GOTOOLCHAIN=local go test ./pec/clamd/
#   scripts/clamd.sh stop DIR              # stop it (DIR is left in place)
#
# Subcommands: start DIR, env DIR (print the export lines of the running
# clamd again), stop DIR. Only the export lines go to stdout; progress and
# errors go to stderr. DIR holds db/eicar.hdb, clamd.conf, clamd.sock,
# clamd.pid, clamd.port, clamd.log and clamd.out. DIR must be at most 96
# bytes long once absolute, for clamd.sock to fit a unix socket address.
#
# clamd runs as whoever starts it: the configuration sets no User, so as
# root (the case on these machines) it stays root and can read DIR, and as
# any other user it needs no privileges at all.
set -euo pipefail
export GOTOOLCHAIN=local

START_TIMEOUT=${CUSTODE_CLAMD_START_TIMEOUT:-60} # seconds

log() { printf 'clamd.sh: %s\n' "$*" >&2; }

usage() {
	echo "usage: $0 start|env|stop DIR" >&2
	exit 2
}

# eicar prints the 68-byte EICAR anti-virus test string, with no newline.
# It is put together from pieces so that no file of the repository holds it
# (and no scanner flags the repository).
eicar() {
	local a='X5O!P%@AP[4\PZX54(P^)7CC)7}$' b='EICAR-STANDARD-' c='ANTIVIRUS-TEST-' d='FILE!$H+H*'
	printf '%s' "$a$b$c$d"
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	log "no free port found"
	return 1
}

# clamd_ping PORT succeeds if clamd answers PONG on 127.0.0.1:PORT within 2s.
clamd_ping() {
	local port=$1 answer=""
	(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf 'zPING\0' >&3
		IFS= read -r -d '' -t 2 answer <&3 || true
		[ "$answer" = PONG ]
	) 2>/dev/null
}

# ours PID succeeds if PID is the clamd started with DIR's configuration
# (not another process that got the number of a clamd long gone).
ours() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || return 1
	[ -r "/proc/$pid/cmdline" ] || return 0 # no /proc: trust the pid file
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file=$DIR/clamd.conf"
}

running() { [ -f "$DIR/clamd.pid" ] && ours "$(cat "$DIR/clamd.pid")"; }

print_env() {
	if ! running || [ ! -f "$DIR/clamd.port" ]; then
		log "no clamd is running in $DIR; run: $0 start $DIR"
		return 1
	fi
	printf 'export CUSTODE_TEST_CLAMD_SOCKET=%q\n' "$DIR/clamd.sock"
	printf 'export CUSTODE_TEST_CLAMD_TCP=%q\n' "127.0.0.1:$(cat "$DIR/clamd.port")"
}

start() {
	if ! command -v clamd >/dev/null; then
		log "clamd is not installed; run scripts/install-test-deps.sh (Debian package clamav-daemon)"
		return 1
	fi
	# A longer path does not fit a unix socket address: clamd would
	# silently use it cut short, somewhere else.
	if [ ${#DIR} -gt 96 ]; then
		log "DIR is too long for a unix socket path (${#DIR} bytes, at most 96): $DIR"
		return 1
	fi
	case "$DIR" in
	*[[:space:]]*)
		log "DIR must not hold spaces (clamd.conf cannot quote them): $DIR"
		return 1
		;;
	esac
	if running; then
		# A clamd started by an older version of this script (another
		# StreamMaxLength) is restarted with this one's configuration.
		if grep -qx 'StreamMaxLength 32M' "$DIR/clamd.conf" 2>/dev/null; then
			log "clamd already running in $DIR (pid $(cat "$DIR/clamd.pid"))"
			print_env
			return
		fi
		log "clamd in $DIR has an older configuration: restarting it"
		stop
	fi
	rm -f "$DIR/clamd.pid" "$DIR/clamd.port" "$DIR/clamd.sock"
	mkdir -p "$DIR/db"

	local md5 size port pid
	md5=$(eicar | md5sum | awk '{print $1}')
	size=$(eicar | wc -c)
	# .hdb: MD5:size:name; clamd reports it as NAME.UNOFFICIAL.
	echo "$md5:$size:Eicar-Test-Signature" >"$DIR/db/eicar.hdb"

	port=$(free_port)
	cat >"$DIR/clamd.conf" <<EOF
# Written by scripts/clamd.sh: a test clamd, EICAR-only database.
Foreground yes
DatabaseDirectory $DIR/db
LocalSocket $DIR/clamd.sock
LocalSocketMode 600
FixStaleSocket yes
TCPSocket $port
TCPAddr 127.0.0.1
PidFile $DIR/clamd.pid
LogSyslog no
LogFile $DIR/clamd.log
LogTime yes
StreamMaxLength 32M
MaxThreads 4
SelfCheck 0
EOF
	# clamd.log is clamd's own log; clamd.out catches what it prints before
	# it opens that (configuration errors, for one).
	: >"$DIR/clamd.log"
	setsid clamd --config-file="$DIR/clamd.conf" >"$DIR/clamd.out" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$DIR/clamd.pid"
	echo "$port" >"$DIR/clamd.port"

	local deadline=$((SECONDS + START_TIMEOUT))
	until [ -S "$DIR/clamd.sock" ] && clamd_ping "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "clamd exited; its output and log:"
			tail -n 30 "$DIR/clamd.out" "$DIR/clamd.log" >&2
			rm -f "$DIR/clamd.pid" "$DIR/clamd.port"
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "clamd did not answer PING on 127.0.0.1:$port within ${START_TIMEOUT}s; its output and log:"
			tail -n 30 "$DIR/clamd.out" "$DIR/clamd.log" >&2
			stop
			return 1
		fi
		sleep 0.2
	done
	log "clamd listening on $DIR/clamd.sock and 127.0.0.1:$port (pid $pid)"
	print_env
}

stop() {
	local pid
	if [ -f "$DIR/clamd.pid" ]; then
		pid=$(cat "$DIR/clamd.pid")
		if ours "$pid"; then
			kill "$pid"
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
			log "stopped clamd (pid $pid)"
		fi
	fi
	rm -f "$DIR/clamd.pid" "$DIR/clamd.port" "$DIR/clamd.sock"
}

[ $# -eq 2 ] || usage
cmd=$1
case "$cmd" in
start)
	mkdir -p "$2"
	DIR=$(cd "$2" && pwd)
	start
	;;
env)
	[ -d "$2" ] || { log "no such directory: $2"; exit 1; }
	DIR=$(cd "$2" && pwd)
	print_env
	;;
stop)
	[ -d "$2" ] || exit 0 # nothing was started there
	DIR=$(cd "$2" && pwd)
	stop
	;;
*) usage ;;
esac
