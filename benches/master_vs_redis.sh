#!/usr/bin/env bash
# The master against Redis, side by side in one run, at 1, 8 and 32
# connections, one call at a time per connection (no pipelining):
#   crudjt bench --mix create=1  vs  redis-benchmark SET key value EX 3600
#   crudjt bench --mix read=1    vs  redis-benchmark GET key
# with 256-byte data. Needs redis-server and redis-benchmark (Debian's
# redis-server and redis-tools packages); builds crudjt in release mode.
#
# Two more sets of rows, as the same load from other clients:
#   busy   both crudjt ends busy-poll (serve and bench --busy-poll 200us;
#          the busy bench runs every connection on one thread, so at 8
#          and 32 connections the client is the limit)
#   h2load ReadToken from nghttp2's h2load (Debian's nghttp2-client), a C
#          HTTP/2 load generator as light as redis-benchmark, one call at a
#          time per connection, against each master (h2load/busy: the
#          busy-polling one, so only the master polls); skipped when h2load
#          is not installed
#
# Usage: benches/master_vs_redis.sh [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
crudjt_port=50071
redis_port=6391
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1; rm -rf "$work"' EXIT

cargo build --release -q -p crudjt-cli
crudjt=target/release/crudjt
key=$($crudjt keygen)
CRUDJT_SECRET_KEY=$key $crudjt serve --store-path "$work/store" \
    --port $crudjt_port --log-level warn &
busy_port=$((crudjt_port + 1))
CRUDJT_SECRET_KEY=$key $crudjt serve --store-path "$work/busy-store" \
    --port $busy_port --log-level warn --busy-poll 200us &
redis-server --port $redis_port --save "" --appendonly no --daemonize yes \
    --logfile "$work/redis.log" >/dev/null
sleep 1

value=$(head -c 256 /dev/zero | tr '\0' 'x')
requests=$((seconds * 20000))

# Prints "ops/s p50_us p99_us" for one crudjt bench run; more arguments go
# to crudjt bench.
crudjt_run() {
    local connections=$1 mix=$2
    shift 2
    $crudjt bench --port $crudjt_port --connections "$connections" --mix "$mix" \
        --duration "${seconds}s" --warmup 1s "$@" 2>/dev/null |
        awk '$1 == "all" { print $3, $5, $6 }'
}

# Prints "ops/s mean_us" for h2load reading one token over $1 connections
# from the master on port $2 (h2load gives its mean in us, ms or s).
h2load_run() {
    h2load -n $((requests * $1 / 4 + 2000)) -c "$1" -m 1 -d "$work/read-$2.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$2/token.TokenService/ReadToken" |
        awk '/^finished in/ { ops = $4 } /^time for request:/ { mean = $6 }
             END {
                 scale = 1
                 if (mean ~ /us$/) sub(/us$/, "", mean)
                 else if (mean ~ /ms$/) { sub(/ms$/, "", mean); scale = 1000 }
                 else { sub(/s$/, "", mean); scale = 1000000 }
                 printf "%d %d\n", ops, mean * scale
             }'
}

# Prints "ops/s p50_us p99_us" for one redis-benchmark run (CSV output).
redis_run() {
    local connections=$1
    shift
    redis-benchmark -p $redis_port -c "$connections" -n $((requests * connections / 4 + 2000)) \
        -r 100000 --csv "$@" 2>/dev/null |
        awk -F'","' 'NR == 2 { printf "%d %d %d\n", $2, $5 * 1000, $7 * 1000 }'
}

printf '%-12s %5s  %12s %8s %8s  %12s %8s %8s  %6s\n' op conns \
    "crudjt ops/s" "p50 us" "p99 us" "redis ops/s" "p50 us" "p99 us" ratio
for connections in 1 8 32; do
    read -r c_ops c_p50 c_p99 <<<"$(crudjt_run "$connections" create=1)"
    read -r r_ops r_p50 r_p99 <<<"$(redis_run "$connections" set key:__rand_int__ "$value" ex 3600)"
    printf '%-12s %5s  %12s %8s %8s  %12s %8s %8s  %6.2f\n' create "$connections" \
        "$c_ops" "$c_p50" "$c_p99" "$r_ops" "$r_p50" "$r_p99" "$(echo "$c_ops / $r_ops" | bc -l)"
    read -r c_ops c_p50 c_p99 <<<"$(crudjt_run "$connections" read=1)"
    read -r r_ops r_p50 r_p99 <<<"$(redis_run "$connections" get key:__rand_int__)"
    printf '%-12s %5s  %12s %8s %8s  %12s %8s %8s  %6.2f\n' read "$connections" \
        "$c_ops" "$c_p50" "$c_p99" "$r_ops" "$r_p50" "$r_p99" "$(echo "$c_ops / $r_ops" | bc -l)"
    for mix in create read; do
        read -r c_ops c_p50 c_p99 <<<"$(crudjt_port=$busy_port crudjt_run "$connections" \
            $mix=1 --busy-poll 200us)"
        printf '%-12s %5s  %12s %8s %8s\n' "$mix/busy" "$connections" "$c_ops" "$c_p50" "$c_p99"
    done
done

if command -v h2load >/dev/null; then
    pad=$(head -c 240 /dev/zero | tr '\0' 'x')
    for port in $crudjt_port $busy_port; do
        # A ReadTokenRequest in its gRPC frame: no compression, the length,
        # then field 1 (the token, 22 bytes).
        token=$($crudjt create --port "$port" "{\"pad\": \"$pad\"}")
        { printf '\x00\x00\x00\x00\x18\x0a\x16'; printf '%s' "$token"; } >"$work/read-$port.grpc"
        # h2load counts any HTTP 200 as done, gRPC errors too: make sure
        # the request is one the master answers.
        [ ${#token} -eq 22 ] && $crudjt read --port "$port" "$token" >/dev/null
    done
    printf '\n%-12s %5s  %12s %8s\n' op conns "ops/s" "mean us"
    for connections in 1 8 32; do
        read -r h_ops h_mean <<<"$(h2load_run "$connections" $crudjt_port)"
        printf '%-12s %5s  %12s %8s\n' read/h2load "$connections" "$h_ops" "$h_mean"
        read -r h_ops h_mean <<<"$(h2load_run "$connections" $busy_port)"
        printf '%-12s %5s  %12s %8s\n' h2load/busy "$connections" "$h_ops" "$h_mean"
    done
fi
