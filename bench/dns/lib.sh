# Shared by bench/dns/run.sh and bench/dns/router.sh (sourced): their common knobs,
# reading dnsperf's figures and the table of alternating rounds.

# Seconds per dnsperf run, rounds of both servers, dnsperf clients.
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}

# Waits (bounded: 5 s) until the command "${@:2}" (a `dig +short` of the bench's name)
# prints 10.32.0.1; exits with the message $1 if it does not.
wait_answer() {
    local failed=$1
    shift
    for _ in $(seq 50); do
        [ "$("$@" 2>/dev/null)" = 10.32.0.1 ] && return 0
        sleep 0.1
    done
    echo "$failed" >&2
    exit 1
}

# Prints "QPS LATENCY LOST" from dnsperf's output $2; exits naming $1 if it has no figure.
dnsperf_figures() {
    local who=$1 out=$2 qps lat lost
    qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
    lat=$(echo "$out" | awk '/Average Latency/ {print $4}')
    lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
    [ -n "$qps" ] || { echo "$who: dnsperf gave no figure:" >&2; echo "$out" >&2; exit 1; }
    echo "$qps $lat $lost"
}

# Loads dnsmasq then weft ROUNDS times in turn, so that other load on the machine hits both
# alike, with the caller's `load TARGET` (which prints "QPS LATENCY LOST"); prints a row a
# run, then both means and their ratio.
# Arguments: width of the server column, dnsmasq's name, its target, weft's name, its target.
alternate_rounds() {
    local width=$1 dname=$2 dtarget=$3 wname=$4 wtarget=$5
    local d_sum=0 w_sum=0 r d_qps d_lat d_lost w_qps w_lat w_lost
    printf "%-6s %-${width}s %14s %14s %6s\n" round server "queries/s" "avg latency s" lost
    for r in $(seq "$ROUNDS"); do
        read -r d_qps d_lat d_lost < <(load "$dtarget")
        printf "%-6s %-${width}s %14.0f %14s %6s\n" "$r" "$dname" "$d_qps" "$d_lat" "$d_lost"
        read -r w_qps w_lat w_lost < <(load "$wtarget")
        printf "%-6s %-${width}s %14.0f %14s %6s\n" "$r" "$wname" "$w_qps" "$w_lat" "$w_lost"
        d_sum=$(awk -v a="$d_sum" -v b="$d_qps" 'BEGIN { print a + b }')
        w_sum=$(awk -v a="$w_sum" -v b="$w_qps" 'BEGIN { print a + b }')
    done
    awk -v d="$d_sum" -v w="$w_sum" -v n="$ROUNDS" -v dn="$dname" -v wn="$wname" -v width="$width" 'BEGIN {
        row = "mean   %-" width "s %14.0f\n"
        printf row, dn, d / n
        printf "mean   %-" width "s %14.0f   ratio weft/dnsmasq %.2f\n", wn, w / n, w / d }'
}
