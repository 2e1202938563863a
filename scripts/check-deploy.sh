#!/usr/bin/env bash
# Offline checks of deploy/ (no cloud, no image build), as CI runs them:
#   1. checkov: the Dockerfile, the Terraform, and the Kubernetes objects each overlay builds
#      (no failed check; each skip is justified in a comment beside it)
#   2. every .tf file parses (python-hcl2); `terraform validate` needs provider downloads
#   3. `kubectl kustomize` builds each overlay (and postgres + the monitoring component, and each
#      overlay + the webhooks component), and kubernetes-validate checks the output against
#      current Kubernetes versions
#   4. promtool check rules + test rules; the PrometheusRule carries rules.yml verbatim
#   5. the crate builds with the Dockerfile's flags (features, target), see check_dockerfile_build
#
# Tools: DEPLOY_TOOLS (default .deploy-tools/, made by scripts/install-deploy-tools.sh) holds a
# Python venv with checkov, python-hcl2 and kubernetes-validate, and a kubectl; promtool is
# Debian's `prometheus` package. `--write-prometheusrule` regenerates the PrometheusRule instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="${DEPLOY_TOOLS:-$PWD/.deploy-tools}"
PY="$TOOLS/venv/bin/python"
KUBECTL="$TOOLS/bin/kubectl"
# The oldest Kubernetes minor that EKS still supports as of this writing, and the newest schemas
# kubernetes-validate ships.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.33.0 1.37.0}"
OVERLAYS=(postgres sqlite)
WORK="$(mktemp -d)"
MONITORING_CHECK=deploy/kubernetes/.monitoring-check
WEBHOOKS_CHECK=deploy/kubernetes/.webhooks-check
trap 'rm -rf "$WORK" "$MONITORING_CHECK" "$WEBHOOKS_CHECK"' EXIT

write_prometheusrule() {
    "$PY" - "$@" <<'PYEOF'
import sys, yaml
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
body = yaml.safe_dump(rules, sort_keys=False, width=1000)
text = """# Generated from deploy/prometheus/rules.yml: edit that file, then regenerate with
#   scripts/check-deploy.sh --write-prometheusrule
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: optout
  labels:
    release: kube-prometheus-stack
spec:
""" + "".join("  " + l if l.strip() else l for l in body.splitlines(True))
open(sys.argv[1], "w").write(text)
PYEOF
}

# Builds the crate with the flags of the Dockerfile's `cargo build` line (which `cargo chef
# cook` must share, or the cooked dependencies would be rebuilt): the same features and target.
# In the dev profile: --release changes optimisation and debug assertions, not what compiles
# or links, and the dev binary is the one the test suite has just built, so in CI this costs
# seconds instead of a second full (release) compile of every dependency.
check_dockerfile_build() {
    local dockerfile=deploy/container/Dockerfile build cook
    build="$(grep -E '^RUN cargo build ' "$dockerfile")" || { echo "no 'RUN cargo build' line in $dockerfile" >&2; exit 1; }
    cook="$(grep -E '^RUN cargo chef cook ' "$dockerfile")" || { echo "no 'RUN cargo chef cook' line in $dockerfile" >&2; exit 1; }
    read -r -a build_flags <<< "${build#RUN cargo build }"
    read -r -a cook_flags <<< "$(sed -E 's/ --recipe-path [^ ]+//' <<< "${cook#RUN cargo chef cook }")"
    if [[ "${build_flags[*]}" != "${cook_flags[*]}" ]]; then
        echo "$dockerfile: cargo chef cook (${cook_flags[*]}) and cargo build (${build_flags[*]}) differ" >&2
        exit 1
    fi
    local flags=() i=0
    while (( i < ${#build_flags[@]} )); do
        case "${build_flags[i]}" in
            --release) ;;
            --locked|--no-default-features|--all-features) flags+=("${build_flags[i]}") ;;
            --bin|--features|--target|-F) flags+=("${build_flags[i]}" "${build_flags[i+1]}"); i=$((i + 1)) ;;
            *) echo "$dockerfile: flag ${build_flags[i]} is unknown to this check; teach it" >&2; exit 1 ;;
        esac
        i=$((i + 1))
    done
    echo "Dockerfile: cargo build ${build_flags[*]}"
    echo "running:    cargo build ${flags[*]}"
    cargo build --quiet "${flags[@]}"
}

if [[ "${1:-}" == "--write-prometheusrule" ]]; then
    write_prometheusrule deploy/kubernetes/monitoring/prometheusrule.yaml
    exit 0
fi

for tool in "$PY" "$KUBECTL"; do
    [[ -x "$tool" ]] || { echo "missing $tool: run scripts/install-deploy-tools.sh" >&2; exit 1; }
done
command -v promtool >/dev/null || { echo "missing promtool: apt-get install prometheus" >&2; exit 1; }

echo "== kustomize: build each overlay, and postgres with the monitoring component"
mkdir -p "$WORK/k8s" "$MONITORING_CHECK"
for overlay in "${OVERLAYS[@]}"; do
    "$KUBECTL" kustomize "deploy/kubernetes/$overlay" > "$WORK/k8s/$overlay.yaml"
    echo "$overlay: $(grep -c '^kind:' "$WORK/k8s/$overlay.yaml") objects"
done
# As a user would add it: `components:` in the overlay (so its namespace applies).
cat > "$MONITORING_CHECK/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: optout
resources:
  - ../postgres
components:
  - ../monitoring
YAML
"$KUBECTL" kustomize "$MONITORING_CHECK" > "$WORK/k8s/postgres-monitoring.yaml"
echo "postgres + monitoring: $(grep -c '^kind:' "$WORK/k8s/postgres-monitoring.yaml") objects"
# Each overlay with Twilio's webhooks (Ingress, NetworkPolicy, token Secret mounted, settings).
for overlay in "${OVERLAYS[@]}"; do
    mkdir -p "$WEBHOOKS_CHECK/$overlay"
    cat > "$WEBHOOKS_CHECK/$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: optout
resources:
  - ../../$overlay
components:
  - ../../webhooks
YAML
    "$KUBECTL" kustomize "$WEBHOOKS_CHECK/$overlay" > "$WORK/k8s/$overlay-webhooks.yaml"
    grep -q 'mountPath: /etc/optout/twilio' "$WORK/k8s/$overlay-webhooks.yaml" || {
        echo "$overlay + webhooks: the token Secret is not mounted" >&2
        exit 1
    }
    echo "$overlay + webhooks: $(grep -c '^kind:' "$WORK/k8s/$overlay-webhooks.yaml") objects"
done
"$KUBECTL" version --client 2>/dev/null | sed 's/^/  /'

echo "== kubernetes-validate ($("$TOOLS/venv/bin/kubernetes-validate" --version)) against $KUBE_VERSIONS"
for version in $KUBE_VERSIONS; do
    # --strict rejects unknown fields. The Prometheus Operator's kinds have no schema there
    # (a warning); their content is checked by promtool below.
    "$TOOLS/venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$WORK"/k8s/*.yaml
done
echo "valid"

echo "== checkov (Dockerfile, Terraform, built Kubernetes objects)"
CHECKOV=("$TOOLS/venv/bin/checkov" --quiet --compact --skip-download)
"${CHECKOV[@]}" -d deploy --framework dockerfile terraform
"${CHECKOV[@]}" -d "$WORK/k8s" --framework kubernetes
"$TOOLS/venv/bin/checkov" --version | sed 's/^/checkov /'

echo "== Terraform files parse (python-hcl2)"
"$PY" - <<'PYEOF'
import glob, hcl2
files = sorted(glob.glob("deploy/terraform/**/*.tf", recursive=True))
assert files, "no .tf files found"
for f in files:
    with open(f) as fh:
        hcl2.load(fh)
print(f"{len(files)} files parse")
PYEOF

echo "== promtool"
promtool check rules deploy/prometheus/rules.yml
(cd deploy/prometheus/tests && promtool test rules rules_test.yml)
write_prometheusrule "$WORK/prometheusrule.yaml"
diff -u deploy/kubernetes/monitoring/prometheusrule.yaml "$WORK/prometheusrule.yaml" || {
    echo "deploy/kubernetes/monitoring/prometheusrule.yaml is stale: run scripts/check-deploy.sh --write-prometheusrule" >&2
    exit 1
}
# The dashboard's queries parse as PromQL: Grafana's variables replaced by sample values, each
# query becomes a recording rule that promtool checks.
"$PY" - "$WORK/dashboard-rules.yml" <<'PYEOF'
import json, sys, yaml
dash = json.load(open("deploy/prometheus/dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "dashboard has no queries"
rules = [{"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
         for i, e in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
print(f"dashboard: {len(dash['panels'])} panels, {len(exprs)} queries")
PYEOF
promtool check rules "$WORK/dashboard-rules.yml"

echo "== the crate builds with the Dockerfile's flags"
check_dockerfile_build
