#!/usr/bin/env bash
# The master against Redis, side by side in one run, at 1, 8 and 32
# connections, one call at a time per connection (no pipelining):
#   crudjt bench --mix create=1  vs  redis-benchmark SET key value EX 3600
#   crudjt bench --mix read=1    vs  redis-benchmark GET key
# with 256-byte data. Needs redis-server and redis-benchmark (Debian's
# redis-server and redis-tools packages); builds crudjt in release mode.
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
CRUDJT_SECRET_KEY=$($crudjt keygen) $crudjt serve --store-path "$work/store" \
    --port $crudjt_port --log-level warn &
redis-server --port $redis_port --save "" --appendonly no --daemonize yes \
    --logfile "$work/redis.log" >/dev/null
sleep 1

value=$(head -c 256 /dev/zero | tr '\0' 'x')
requests=$((seconds * 20000))

# Prints "ops/s p50_us p99_us" for one crudjt bench run.
crudjt_run() {
    $crudjt bench --port $crudjt_port --connections "$1" --mix "$2" \
        --duration "${seconds}s" --warmup 1s 2>/dev/null |
        awk '$1 == "all" { print $3, $5, $6 }'
}

# Prints "ops/s p50_us p99_us" for one redis-benchmark run (CSV output).
redis_run() {
    local connections=$1
    shift
    redis-benchmark -p $redis_port -c "$connections" -n $((requests * connections / 4 + 2000)) \
        -r 100000 --csv "$@" 2>/dev/null |
        awk -F'","' 'NR == 2 { printf "%d %d %d\n", $2, $5 * 1000, $7 * 1000 }'
}

printf '%-6s %5s  %12s %8s %8s  %12s %8s %8s  %6s\n' op conns \
    "crudjt ops/s" "p50 us" "p99 us" "redis ops/s" "p50 us" "p99 us" ratio
for connections in 1 8 32; do
    read -r c_ops c_p50 c_p99 <<<"$(crudjt_run "$connections" create=1)"
    read -r r_ops r_p50 r_p99 <<<"$(redis_run "$connections" set key:__rand_int__ "$value" ex 3600)"
    printf '%-6s %5s  %12s %8s %8s  %12s %8s %8s  %6.2f\n' create "$connections" \
        "$c_ops" "$c_p50" "$c_p99" "$r_ops" "$r_p50" "$r_p99" "$(echo "$c_ops / $r_ops" | bc -l)"
    read -r c_ops c_p50 c_p99 <<<"$(crudjt_run "$connections" read=1)"
    read -r r_ops r_p50 r_p99 <<<"$(redis_run "$connections" get key:__rand_int__)"
    printf '%-6s %5s  %12s %8s %8s  %12s %8s %8s  %6.2f\n' read "$connections" \
        "$c_ops" "$c_p50" "$c_p99" "$r_ops" "$r_p50" "$r_p99" "$(echo "$c_ops / $r_ops" | bc -l)"
done
