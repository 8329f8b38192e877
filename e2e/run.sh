#!/usr/bin/env bash
# End-to-end test against a real cluster (kind, k3d, EKS, ...) with the AWS emulator:
# applies the CRD, runs the operator from this checkout against the cluster, creates a service
# account and bindings, waits for their conditions, changes a policy in the emulator and waits
# for the binding to follow. With E2E_WEBHOOK_URL (an https URL at which the cluster's API
# server reaches this machine's port 8443), it also registers the webhook and checks that
# `kubectl apply` of a failing binding is rejected and a good one admitted.
#
#   KUBECONFIG=~/.kube/config e2e/run.sh
#
# Without a reachable cluster it says so and exits 0 (skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e: skipped: no reachable cluster (set KUBECONFIG to a kind, k3d or EKS cluster)"
  exit 0
fi

# From here on the operator and boto3 talk to the emulator only: no instance metadata, no real
# credentials.
# shellcheck source=scripts/loopback-aws.sh
. scripts/loopback-aws.sh
exec scripts/with-moto.sh bash -c '
set -euo pipefail
NS="e2e-$RANDOM"
ISSUER="oidc.eks.us-east-1.amazonaws.com/id/E2ETESTCLUSTER"
PY="${MOTO_VENV:-/var/tmp/sqs-access-operator-moto-5.2.5}/bin/python"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="$SQS_ACCESS_TEST_MOTO_URL"

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
trap "kubectl delete namespace $NS --wait=false >/dev/null 2>&1 || true; kill \$OP 2>/dev/null || true" EXIT
kubectl -n "$NS" create serviceaccount producer
kubectl -n "$NS" annotate serviceaccount producer eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/e2e-producer

echo "== operator"
cargo build --quiet --bin sqs-access-operator
WEBHOOK_ARGS=()
if [ -n "${E2E_WEBHOOK_URL:-}" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=e2e" \
    -addext "subjectAltName=DNS:$(echo "$E2E_WEBHOOK_URL" | sed -E "s#https://([^:/]+).*#\1#")" \
    -keyout /tmp/e2e-tls.key -out /tmp/e2e-tls.crt 2>/dev/null
  WEBHOOK_ARGS=(--webhook-addr 0.0.0.0:8443 --tls-cert-file /tmp/e2e-tls.crt --tls-key-file /tmp/e2e-tls.key)
fi
target/debug/sqs-access-operator run --no-leader-election --admin-addr 127.0.0.1:18080 \
  --oidc-issuer "https://$ISSUER" --recheck-interval 5s "${WEBHOOK_ARGS[@]}" &
OP=$!
for _ in $(seq 1 60); do curl -fs http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done

wait_reason() { # binding reason
  for _ in $(seq 1 60); do
    r=$(kubectl -n "$NS" get sqsab "$1" -o jsonpath="{.status.reason}" 2>/dev/null || true)
    [ "$r" = "$2" ] && { echo "ok: $1 is $2"; return 0; }
    sleep 1
  done
  echo "FAIL: $1 is \"$r\", expected $2"; kubectl -n "$NS" describe sqsab "$1"; return 1
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
  CA=$(base64 -w0 < /tmp/e2e-tls.crt)
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
  trap "kubectl delete validatingwebhookconfiguration sqs-access-operator-e2e >/dev/null 2>&1 || true; kubectl delete namespace $NS --wait=false >/dev/null 2>&1 || true; kill \$OP 2>/dev/null || true" EXIT
  sleep 2
  if kubectl -n "$NS" apply -f - <<YAML 2>/tmp/e2e-apply.err
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: rejected}
spec: {serviceAccountName: producer, queue: "arn:aws:sqs:us-east-1:123456789012:e2e-orders", access: [Send]}
YAML
  then echo "FAIL: a failing binding was admitted"; exit 1; fi
  grep -q ExplicitDenyInQueuePolicy /tmp/e2e-apply.err && echo "ok: rejected with its reason"
fi
echo "e2e: passed"
'
