# Sourced by bench/cluster/restart and bench/cluster/memory: one lone etcd or Cairn member on loopback.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
index_of() { curl -s -m 5 -D - -o /dev/null "$1/v2/keys/" | awk -F': ' 'tolower($1) == "x-etcd-index" {print $2+0}'; }

# start_lone BINARY DATA-DIR CLIENT-PORT PEER-PORT TOKEN SNAPSHOT-COUNT LOG: starts it in the background, its pid in
# $pid, with the cluster bench's heartbeat and election flags (etcd with v2 enabled).
start_lone() {
  local extra=()
  [ "$(basename "$1")" = etcd ] && extra=(--enable-v2=true)
  "$1" "${extra[@]}" --name m0 --data-dir "$2" --listen-client-urls "http://127.0.0.1:$3" \
    --advertise-client-urls "http://127.0.0.1:$3" --listen-peer-urls "http://127.0.0.1:$4" \
    --initial-advertise-peer-urls "http://127.0.0.1:$4" --initial-cluster "m0=http://127.0.0.1:$4" \
    --initial-cluster-token "$5" --heartbeat-interval 100 --election-timeout 1000 \
    --snapshot-count "$6" >>"$7" 2>&1 &
  pid=$!
}
