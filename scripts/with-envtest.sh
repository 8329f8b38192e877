#!/usr/bin/env bash
# Runs a command against a real Kubernetes API server (etcd + kube-apiserver, the envtest
# binaries) on free loopback ports, then stops it and removes its data. Inside, KUBECONFIG names
# an admin kubeconfig for it and the envtest kubectl comes first on PATH.
#   eval "$(../shared/envtest/install)"      # or: export KUBEBUILDER_ASSETS=$(setup-envtest use -p path)
#   scripts/with-envtest.sh kubectl get namespaces
# The binaries come from TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD and TEST_ASSET_KUBECTL, or
# from the folder KUBEBUILDER_ASSETS. The same server the Rust tests start (tests/support/envtest.rs):
# no controller-manager, scheduler or kubelet.
set -euo pipefail

asset() { # asset VARIABLE NAME: the binary's path, or exit 1 saying what is missing
  local path=${!1:-}
  if [[ -z $path && -n ${KUBEBUILDER_ASSETS:-} ]]; then path=$KUBEBUILDER_ASSETS/$2; fi
  if [[ -z $path ]]; then
    echo "with-envtest: set $1 (or KUBEBUILDER_ASSETS), e.g. eval \"\$(../shared/envtest/install)\"" >&2
    exit 1
  fi
  [[ -x $path ]] || { echo "with-envtest: $path ($1) is not an executable" >&2; exit 1; }
  echo "$path"
}
APISERVER=$(asset TEST_ASSET_KUBE_APISERVER kube-apiserver)
ETCD=$(asset TEST_ASSET_ETCD etcd)
KUBECTL=$(asset TEST_ASSET_KUBECTL kubectl)

DIR=$(mktemp -d "${TMPDIR:-/tmp}/envtest.XXXXXX")
ETCD_PID="" APISERVER_PID=""
cleanup() {
  for pid in $APISERVER_PID $ETCD_PID; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in $APISERVER_PID $ETCD_PID; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three distinct free loopback ports.
read -r ETCD_PORT PEER_PORT PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
echo "$TOKEN,admin,admin,system:masters" >"$DIR/tokens.csv"

"$ETCD" --data-dir "$DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$PEER_PORT" --unsafe-no-fsync >"$DIR/etcd.log" 2>&1 &
ETCD_PID=$!
"$APISERVER" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" \
  --cert-dir="$DIR/certs" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --authorization-mode=RBAC \
  --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$DIR/sa.pub" --service-account-signing-key-file="$DIR/sa.key" \
  --token-auth-file="$DIR/tokens.csv" >"$DIR/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$DIR/certs/apiserver.crt"}
users:
- name: admin
  user: {token: "$TOKEN"}
contexts:
- name: envtest
  context: {cluster: envtest, user: admin}
current-context: envtest
EOF
chmod 600 "$DIR/kubeconfig"

for i in $(seq 1 600); do
  if [[ -f $DIR/certs/apiserver.crt ]] &&
    [[ $("$KUBECTL" --kubeconfig "$DIR/kubeconfig" get --raw=/readyz 2>/dev/null) == ok ]]; then
    break
  fi
  for p in "etcd $ETCD_PID" "kube-apiserver $APISERVER_PID"; do
    read -r name pid <<<"$p"
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "with-envtest: $name exited; the end of its log:" >&2
      tail -n 30 "$DIR/$name.log" >&2
      exit 1
    fi
  done
  if ((i == 600)); then
    echo "with-envtest: kube-apiserver not ready after 60 s; the end of its log:" >&2
    tail -n 30 "$DIR/kube-apiserver.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "== envtest: kube-apiserver $("$KUBECTL" --kubeconfig "$DIR/kubeconfig" version -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') on https://127.0.0.1:$PORT" >&2

export KUBECONFIG=$DIR/kubeconfig
PATH="$(dirname "$KUBECTL"):$PATH"
export PATH
"$@"
