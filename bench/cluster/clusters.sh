# Sourced by bench/cluster/run and bench/cluster/cpu: N-member clusters of Cairn ("cairn", and "baseline" for an
# older build) and etcd 3.4 ("etcd") on loopback with the bench's flags. The caller sets `work` (data and logs),
# `pid` (an associative array: KIND-I to the member's pid), `base` (KIND to its first port), `cairn`, `baseline`
# when it runs one, and `seconds` (wrk's duration).

port() { echo $(( ${base[$1]} + 10 * $2 + ${3:-0} )); }    # port KIND MEMBER [0 client | 1 peer]
url() { echo "http://127.0.0.1:$(port "$1" "$2")"; }
initial_cluster() { local k=$1 n=$2 s=""; for i in $(seq 0 $((n - 1))); do s+="${s:+,}m$i=http://127.0.0.1:$(port "$k" "$i" 1)"; done; echo "$s"; }

# start_member KIND I N [extra flags...]: member I of an N-member cluster, in the background (`start_cluster` waits).
start_member() {
  local k=$1 i=$2 n=$3; shift 3
  local bin=$cairn extra=()
  [ "$k" = etcd ] && bin=etcd && extra=(--enable-v2=true)
  [ "$k" = baseline ] && bin=$baseline
  "$bin" "${extra[@]}" --name "m$i" --data-dir "$work/$k-m$i" --listen-client-urls "$(url "$k" "$i")" \
    --advertise-client-urls "$(url "$k" "$i")" --listen-peer-urls "http://127.0.0.1:$(port "$k" "$i" 1)" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(port "$k" "$i" 1)" --initial-cluster "$(initial_cluster "$k" "$n")" \
    --initial-cluster-token "bench-$k" --heartbeat-interval 100 --election-timeout 1000 "$@" >>"$work/$k-m$i.log" 2>&1 &
  pid[$k-$i]=$!
}
wait_serving() { for _ in $(seq 300); do curl -sf -m 1 "$1/v2/keys/" >/dev/null && return; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
leader_of() {   # leader_of KIND N: the member that says it leads
  for _ in $(seq 100); do
    for i in $(seq 0 $(($2 - 1))); do
      curl -s -m 1 "$(url "$1" "$i")/v2/stats/self" 2>/dev/null | grep -q '"state":"StateLeader"' && { echo "$i"; return; }
    done
    sleep 0.1
  done
  return 1
}
start_cluster() {   # start_cluster KIND N [flags...]
  local k=$1 n=$2; shift 2
  for i in $(seq 0 $((n - 1))); do rm -rf "$work/$k-m$i"; start_member "$k" "$i" "$n" "$@"; done
  for i in $(seq 0 $((n - 1))); do wait_serving "$(url "$k" "$i")"; done
  leader_of "$k" "$n" >/dev/null
}
stop_cluster() { for key in "${!pid[@]}"; do [[ $key == $1-* ]] && { kill -9 "${pid[$key]}" 2>/dev/null || true; unset "pid[$key]"; }; done; sleep 0.5; }
# wrk_row URL CONNECTIONS [script]: "requests/s p99-ms"
wrk_row() {
  local threads=$(( $2 < 2 ? 1 : 2 )) script=()
  [ -n "${3:-}" ] && script=(-s "$3")
  wrk -t"$threads" -c"$2" -d"${seconds}s" --latency "${script[@]}" "$1" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; p99=v}
    END {print rps, p99}'
}
