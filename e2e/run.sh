#!/usr/bin/env bash
# End-to-end test against a real cluster (kind, k3d, EKS, ...) with the AWS emulator:
# applies the CRD, runs the operator from this checkout against the cluster, creates a service
# account and bindings, waits for their conditions, changes a policy in the emulator and waits
# for the binding to follow. With E2E_WEBHOOK_URL (an https URL at which the cluster's API
# server reaches this machine's E2E_WEBHOOK_ADDR, default 0.0.0.0:8443), it also registers the
# webhook and checks that `kubectl apply` of a failing binding is rejected with its reason.
#
#   KUBECONFIG=~/.kube/config e2e/run.sh
#
# Without a reachable cluster it runs on a local API server instead (scripts/with-envtest.sh,
# from the envtest binaries: TEST_ASSET_* or KUBEBUILDER_ASSETS), webhook included; without
# those either it says so and exits 0 (skipped), or 1 under SQS_ACCESS_REQUIRE_ENVTEST=1.
# E2E_OPERATOR_BIN runs a prebuilt operator binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${E2E_ON_ENVTEST:-}" ] && ! { command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; }; then
  if [ -n "${TEST_ASSET_KUBE_APISERVER:-}${KUBEBUILDER_ASSETS:-}" ]; then
    echo "e2e: no reachable cluster: running on a local API server (envtest)"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    exec env -u KUBECONFIG E2E_ON_ENVTEST=1 E2E_WEBHOOK_URL="https://127.0.0.1:$port" \
      E2E_WEBHOOK_ADDR="127.0.0.1:$port" scripts/with-envtest.sh "$0" "$@"
  fi
  if [ -n "${SQS_ACCESS_REQUIRE_ENVTEST:-}" ] && [ "${SQS_ACCESS_REQUIRE_ENVTEST}" != 0 ]; then
    echo "e2e: FAIL: no reachable cluster and no envtest binaries (SQS_ACCESS_REQUIRE_ENVTEST is set)"
    exit 1
  fi
  echo "e2e: skipped: no reachable cluster (set KUBECONFIG to a kind, k3d or EKS cluster, or the envtest variables: eval \"\$(../shared/envtest/install)\")"
  exit 0
fi

if [ -z "${E2E_OPERATOR_BIN:-}" ]; then
  cargo build --quiet --bin sqs-access-operator
  E2E_OPERATOR_BIN="${CARGO_TARGET_DIR:-target}/debug/sqs-access-operator"
fi
export E2E_OPERATOR_BIN

# From here on the operator and boto3 talk to the emulator only: no instance metadata, no real
# credentials.
# shellcheck source=scripts/loopback-aws.sh
. scripts/loopback-aws.sh
exec scripts/with-moto.sh bash -c '
set -euo pipefail
NS="e2e-$RANDOM"
ISSUER="oidc.eks.us-east-1.amazonaws.com/id/E2ETESTCLUSTER"
PY="${MOTO_VENV:-/var/tmp/sqs-access-operator-moto-5.2.5}/bin/python"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/e2e.XXXXXX")
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="$SQS_ACCESS_TEST_MOTO_URL" AWS_EC2_METADATA_DISABLED=true

echo "== seeding the emulator"
"$PY" - <<PYEOF
import boto3, json
kw = dict(endpoint_url="$SQS_ACCESS_TEST_MOTO_URL", region_name="us-east-1")
iam, sqs = boto3.client("iam", **kw), boto3.client("sqs", **kw)
iam.create_open_id_connect_provider(Url="https://$ISSUER", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"])
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/$ISSUER"},
  "Action": "sts:AssumeRoleWithWebIdentity",
  "Condition": {"StringEquals": {"$ISSUER:sub": "system:serviceaccount:$NS:producer"}}}]}
iam.create_role(RoleName="e2e-producer", AssumeRolePolicyDocument=json.dumps(trust))
iam.put_role_policy(RoleName="e2e-producer", PolicyName="send", PolicyDocument=json.dumps(
  {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
sqs.create_queue(QueueName="e2e-orders")
PYEOF

echo "== CRD and namespace"
kubectl apply -f crds/sqsaccessbinding.yaml
kubectl wait --for=condition=Established crd/sqsaccessbindings.sqsaccess.io --timeout=60s
kubectl create namespace "$NS"
trap "kubectl delete namespace $NS --wait=false >/dev/null 2>&1 || true; kill \$OP 2>/dev/null || true; rm -rf $WORK" EXIT
kubectl -n "$NS" create serviceaccount producer
kubectl -n "$NS" annotate serviceaccount producer eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/e2e-producer

echo "== operator"
WEBHOOK_ARGS=()
if [ -n "${E2E_WEBHOOK_URL:-}" ]; then
  HOST=$(echo "$E2E_WEBHOOK_URL" | sed -E "s#https://([^:/]+).*#\1#")
  if [[ $HOST =~ ^[0-9.]+$ ]]; then SAN="IP:$HOST"; else SAN="DNS:$HOST"; fi
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=e2e" -addext "subjectAltName=$SAN" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  WEBHOOK_ARGS=(--webhook-addr "${E2E_WEBHOOK_ADDR:-0.0.0.0:8443}" --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key")
fi
# AWS documents are cached for a second only: the policy change below shows within a recheck.
printf "recheckInterval: 5s\naws:\n  cacheTtl: 1s\n" >"$WORK/operator.yaml"
ADMIN_PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])")
"$E2E_OPERATOR_BIN" run --config "$WORK/operator.yaml" --no-leader-election --admin-addr "127.0.0.1:$ADMIN_PORT" \
  --oidc-issuer "https://$ISSUER" --recheck-interval 5s "${WEBHOOK_ARGS[@]}" >"$WORK/operator.log" 2>&1 &
OP=$!
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break; sleep 1; done
curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || { echo "FAIL: the operator is not ready"; cat "$WORK/operator.log"; exit 1; }

wait_reason() { # binding reason
  for _ in $(seq 1 60); do
    r=$(kubectl -n "$NS" get sqsab "$1" -o jsonpath="{.status.reason}" 2>/dev/null || true)
    [ "$r" = "$2" ] && { echo "ok: $1 is $2"; return 0; }
    sleep 1
  done
  echo "FAIL: $1 is \"$r\", expected $2"; kubectl -n "$NS" describe sqsab "$1"; tail -n 50 "$WORK/operator.log"; return 1
}

echo "== bindings"
cat <<YAML | kubectl -n "$NS" apply -f -
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: send-ok}
spec: {serviceAccountName: producer, queue: "arn:aws:sqs:us-east-1:123456789012:e2e-orders", access: [Send]}
---
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: receive-denied}
spec: {serviceAccountName: producer, queue: "arn:aws:sqs:us-east-1:123456789012:e2e-orders", access: [Receive]}
YAML
wait_reason send-ok Allowed
wait_reason receive-denied IdentityPolicyDoesNotAllow

echo "== a policy change in AWS is followed"
"$PY" -c "
import boto3, json
sqs = boto3.client(\"sqs\", endpoint_url=\"$SQS_ACCESS_TEST_MOTO_URL\", region_name=\"us-east-1\")
url = sqs.get_queue_url(QueueName=\"e2e-orders\")[\"QueueUrl\"]
sqs.set_queue_attributes(QueueUrl=url, Attributes={\"Policy\": json.dumps({\"Version\": \"2012-10-17\", \"Statement\": [{\"Sid\": \"Lock\", \"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"sqs:*\", \"Resource\": \"*\"}]})})
"
wait_reason send-ok ExplicitDenyInQueuePolicy

if [ -n "${E2E_WEBHOOK_URL:-}" ]; then
  echo "== webhook"
  CA=$(base64 -w0 < "$WORK/tls.crt")
  cat <<YAML | kubectl apply -f -
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: sqs-access-operator-e2e}
webhooks:
- name: validate.sqsaccess.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig: {url: "$E2E_WEBHOOK_URL/validate", caBundle: "$CA"}
  rules: [{apiGroups: [sqsaccess.io], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [sqsaccessbindings]}]
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "$NS"}}
YAML
  trap "kubectl delete validatingwebhookconfiguration sqs-access-operator-e2e >/dev/null 2>&1 || true; kubectl delete namespace $NS --wait=false >/dev/null 2>&1 || true; kill \$OP 2>/dev/null || true; rm -rf $WORK" EXIT
  sleep 2
  if kubectl -n "$NS" apply -f - <<YAML 2>"$WORK/apply.err"
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: rejected}
spec: {serviceAccountName: producer, queue: "arn:aws:sqs:us-east-1:123456789012:e2e-orders", access: [Send]}
YAML
  then echo "FAIL: a failing binding was admitted"; exit 1; fi
  if grep -q ExplicitDenyInQueuePolicy "$WORK/apply.err"; then echo "ok: rejected with its reason"
  else echo "FAIL: rejected without its reason:"; cat "$WORK/apply.err"; exit 1; fi
  # The lock is lifted in AWS: a binding like it is admitted (once the operator sees the
  # change: it reads AWS through its cache) and becomes Allowed.
  "$PY" -c "
import boto3
sqs = boto3.client(\"sqs\", endpoint_url=\"$SQS_ACCESS_TEST_MOTO_URL\", region_name=\"us-east-1\")
url = sqs.get_queue_url(QueueName=\"e2e-orders\")[\"QueueUrl\"]
sqs.set_queue_attributes(QueueUrl=url, Attributes={\"Policy\": \"\"})
"
  admitted=""
  for _ in $(seq 1 60); do
    if kubectl -n "$NS" apply -f - <<YAML 2>"$WORK/apply.err" >/dev/null
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: admitted}
spec: {serviceAccountName: producer, queue: "arn:aws:sqs:us-east-1:123456789012:e2e-orders", access: [Send]}
YAML
    then admitted=1; break; fi
    sleep 1
  done
  [ -n "$admitted" ] || { echo "FAIL: a passing binding was not admitted:"; cat "$WORK/apply.err"; exit 1; }
  echo "ok: admitted once the queue policy no longer denies"
  wait_reason admitted Allowed
fi
echo "e2e: passed"
'
