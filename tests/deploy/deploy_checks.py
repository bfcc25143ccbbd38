#!/usr/bin/env python3
"""Offline checks of deploy/ (label `deploy`): each mode is one ctest test and takes well under a second.

  schemas    every manifest against its schema (tests/fixtures/k8s/), and broken copies must fail
  semantics  what a schema cannot say: exec-form head, 0.0.0.0:8000, /health probes, podIP
             advertised, served name ds, drain timing, and only flags `troupe CMD --help` lists
  packages   tools/packages/*.txt is the one package list: bootstrap, gpu-bundle and the
             Dockerfile read it, and runtime.txt names exactly the packages of `ldd troupe`

Usage: deploy_checks.py MODE --root REPO [--troupe BINARY]
"""
import argparse
import copy
import functools
import json
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import yaml

SCHEMAS = {
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "Secret"): "secret-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-v1.json",
}
ROOT = pathlib.Path(".")
HTTP_PORT = 8000
SERVED_NAME = "ds"
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}
# Libraries every Debian image has (glibc, the C++ runtime) or CUDA brings (runtime.txt's cuda lines).
BASE_LIBS = re.compile(r"^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcuda|"
                       r"libcudart|libcublas|libcublasLt|libnccl|libnvidia)[.-]")


def load_manifests(root):
    docs = []
    for path in sorted((root / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def schema_for(root, doc):
    name = SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if name is None:
        return None
    return json.loads((root / "tests/fixtures/k8s" / name).read_text())


def schema_errors(root, doc):
    schema = schema_for(root, doc)
    if schema is None:
        return [f"no schema for {doc.get('apiVersion')}/{doc.get('kind')}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def check_schemas(root, _troupe):
    problems = []
    docs = load_manifests(root)
    kinds = {doc["kind"] for _, doc in docs}
    for want in ("LeaderWorkerSet", "Service", "Secret", "PodMonitor"):
        if want not in kinds:
            problems.append(f"deploy/ has no {want}")
    for name, doc in docs:
        problems += [f"{name}: {e}" for e in schema_errors(root, doc)]
    # Negative checks: each broken copy must be refused, or the schemas check nothing.
    lws = next(doc for _, doc in docs if doc["kind"] == "LeaderWorkerSet")
    broken = {
        "restartPolicy outside the enum": lambda d: d["spec"]["leaderWorkerTemplate"].update(restartPolicy="Sometimes"),
        "a misspelt field": lambda d: d["spec"]["leaderWorkerTemplate"].update(sizee=2),
        "a port as text": lambda d: d["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
        ["ports"][0].update(containerPort="eight thousand"),
        "a container without a name": lambda d: d["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
        ["containers"][0].pop("name"),
        "an env var from a secret without its key": lambda d: d["spec"]["leaderWorkerTemplate"]["workerTemplate"]
        ["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"].pop("key"),
    }
    for what, breaker in broken.items():
        doc = copy.deepcopy(lws)
        breaker(doc)
        if not schema_errors(root, doc):
            problems.append(f"the LeaderWorkerSet schema accepts {what}")
    for kind, breaker in {
        "Service": lambda d: d["spec"]["ports"][0].update(protocol="HTTP"),
        "PodMonitor": lambda d: d["spec"].pop("selector"),
        "Secret": lambda d: d.update(data={"join-token": "not base64!"}),
    }.items():
        doc = copy.deepcopy(next(d for _, d in docs if d["kind"] == kind))
        breaker(doc)
        if not schema_errors(root, doc):
            problems.append(f"the {kind} schema accepts a broken {kind}")
    return problems


@functools.lru_cache(maxsize=None)
def help_flags(troupe, command):
    """Long flags and environment variables `troupe COMMAND --help` lists."""
    out = subprocess.run([troupe, command, "--help"], capture_output=True, text=True, timeout=10).stdout
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out))
    envs = set(re.findall(r"\(Env:([A-Z0-9_]+)\)", out))
    if "--help" not in flags:
        raise RuntimeError(f"`{troupe} {command} --help` printed no flags")
    return flags, envs


def flag_value(args, flag):
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def env_of(container, name):
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def gpus(container):
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def check_semantics_of(docs, troupe):
    problems = []
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    lws = by_kind["LeaderWorkerSet"][0]
    template = lws["spec"]["leaderWorkerTemplate"]
    leader, worker = template["leaderTemplate"], template["workerTemplate"]
    secrets = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
               for s in by_kind.get("Secret", [])}
    known = {cmd: help_flags(troupe, cmd) for cmd in ("head", "worker")} if troupe else {}

    if template.get("restartPolicy") != "None":
        problems.append("restartPolicy should be None: troupe restarts its group itself (docs/deploy.md)")
    heads = []
    for role, pod in (("leader", leader), ("worker", worker)):
        spec = pod["spec"]
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in spec["containers"]:
            where = f"{role}/{c['name']}"
            command, args = c.get("command", []), c.get("args", [])
            line = command + args
            if not command or command[0] in SHELLS or "-c" in command:
                problems.append(f"{where}: command must be exec form `troupe ...`, not a shell: {command}")
            if any(a.strip().endswith("&") or " & " in a for a in line):
                problems.append(f"{where}: a background `&` child would not receive SIGTERM")
            if command[:1] != ["troupe"] or len(command) < 2 or command[1] not in ("head", "worker"):
                problems.append(f"{where}: command should be `troupe head` or `troupe worker`: {command}")
                continue
            sub = command[1]
            if sub == "head":
                heads.append((role, c, spec))
            if known:
                flags, envs = known[sub]
                for a in line[2:]:
                    if a.startswith("--") and a.split("=", 1)[0] not in flags:
                        problems.append(f"{where}: `troupe {sub}` has no flag {a.split('=', 1)[0]}")
                for e in c.get("env", []):
                    if e["name"].startswith("TROUPE_") and e["name"] not in envs:
                        problems.append(f"{where}: `troupe {sub}` reads no {e['name']}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], set()):
                    problems.append(f"{where}: secret {ref['name']}/{ref['key']} is not in deploy/secret.example.yaml")
            token = env_of(c, "TROUPE_TOKEN")
            if not (token and "secretKeyRef" in token.get("valueFrom", {})):
                problems.append(f"{where}: TROUPE_TOKEN must come from a Secret")
            if sub == "worker":
                adv = env_of(c, "TROUPE_ADVERTISE_HOST")
                if not adv or adv.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "status.podIP":
                    problems.append(f"{where}: TROUPE_ADVERTISE_HOST must come from status.podIP")
                if gpus(c) != 8:
                    problems.append(f"{where}: a worker holds one node's 8 GPUs")
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                shm = next((v for v in spec.get("volumes", []) if v["name"] == mounts.get("/dev/shm")), None)
                if not shm or shm.get("emptyDir", {}).get("medium") != "Memory":
                    problems.append(f"{where}: /dev/shm must be an emptyDir of medium Memory")
                sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
                if sleep is None or sleep >= grace:
                    problems.append(f"{where}: preStop sleep ({sleep}) must keep the stage up during the head's "
                                    f"drain and end within terminationGracePeriodSeconds ({grace})")
            for m in c.get("volumeMounts", []):
                if m["mountPath"].startswith("/models") and not m.get("readOnly"):
                    problems.append(f"{where}: the model volume must be mounted read-only")
            # Readiness and start-up ask /health (a model can answer now); liveness asks /live, which
            # stays 200 through loading, draining and group restarts (only a failed engine is dead).
            for key, path in (("startupProbe", "/health"), ("readinessProbe", "/health"), ("livenessProbe", "/live")):
                probe = c.get(key)
                if sub == "head" and not probe:
                    problems.append(f"{where}: no {key}")
                if probe and sub == "head" and (probe.get("httpGet", {}).get("path") != path or
                                                probe["httpGet"].get("port") not in ("http", HTTP_PORT)):
                    problems.append(f"{where}: {key} must get {path} on the HTTP port")
                # A worker's probes ask its own --health-port (the HTTP port is the head's).
                if probe and sub != "head" and (probe.get("httpGet", {}).get("path") != "/live" or key != "livenessProbe"
                                                or "--health-port=8001" not in c.get("args", [])):
                    problems.append(f"{where}: a worker probes only /live, on its --health-port=8001")
    if len(heads) != 1 or heads[0][0] != "leader":
        problems.append("exactly one `troupe head`, in the leader pod")
    else:
        _, head, spec = heads[0]
        args = head.get("args", [])
        for flag, want in (("--host", "0.0.0.0"), ("--http-port", str(HTTP_PORT)),
                           ("--served-model-name", SERVED_NAME)):
            if flag_value(args, flag) != want:
                problems.append(f"head: {flag} must be {want}, is {flag_value(args, flag)}")
        pp = int(flag_value(args, "--pipeline-parallel-size") or 1)
        tp = int(flag_value(args, "--tensor-parallel-size") or 1)
        total = sum(gpus(c) for c in leader["spec"]["containers"]) + \
            (template.get("size", 1) - 1) * sum(gpus(c) for c in worker["spec"]["containers"])
        if (pp, tp, template.get("size")) != (2, 8, 2) or total != pp * tp:
            problems.append(f"the seed layout is PP=2 x TP=8 on a group of 2 pods: pp={pp} tp={tp} "
                            f"size={template.get('size')} gpus={total}")
        ports = {p.get("name"): p["containerPort"] for p in head.get("ports", [])}
        if ports.get("http") != HTTP_PORT:
            problems.append(f"head: the port named http must be {HTTP_PORT}")
        api_key = env_of(head, "TROUPE_API_KEY")
        if not (api_key and "secretKeyRef" in api_key.get("valueFrom", {})):
            problems.append("head: TROUPE_API_KEY must come from a Secret")
        timeout = float(flag_value(args, "--shutdown-timeout") or 30)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        # The drain, then 5 s for aborted streams to write their end, then the stop itself.
        if grace < timeout + 10:
            problems.append(f"terminationGracePeriodSeconds {grace} < --shutdown-timeout {timeout} + 10")
        for pod in (leader, worker):
            for c in pod["spec"]["containers"]:
                sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
                if c.get("command", [])[1:2] == ["worker"] and sleep is not None and sleep < timeout:
                    problems.append(f"{c['name']}: preStop sleep {sleep} s ends before the head's drain ({timeout} s)")
        annotations = leader.get("metadata", {}).get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(HTTP_PORT) \
                or annotations.get("prometheus.io/path") != "/metrics":
            problems.append("leader pod: prometheus.io/scrape, /port 8000 and /path /metrics annotations")
    problems += config_file_agrees(heads)
    leader_labels = leader.get("metadata", {}).get("labels", {})
    for svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector", {})
        if not selector or any(leader_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"Service {svc['metadata']['name']}: its selector must pick the leader pods")
        worker_labels = worker.get("metadata", {}).get("labels", {})
        if selector and all(worker_labels.get(k) == v for k, v in selector.items()):
            problems.append(f"Service {svc['metadata']['name']}: its selector also picks worker pods (no HTTP there)")
        for p in svc["spec"]["ports"]:
            if p["port"] != HTTP_PORT or p.get("targetPort") not in ("http", HTTP_PORT):
                problems.append(f"Service {svc['metadata']['name']}: port {p['port']} -> {p.get('targetPort')}")
    for pm in by_kind.get("PodMonitor", []):
        labels = pm["spec"]["selector"].get("matchLabels", {})
        if any(leader_labels.get(k) != v for k, v in labels.items()):
            problems.append("PodMonitor: its selector must pick the leader pods")
        for ep in pm["spec"].get("podMetricsEndpoints", []):
            if ep.get("port") != "http" or ep.get("path", "/metrics") != "/metrics":
                problems.append("PodMonitor: scrape port http, path /metrics")
    for name, keys in secrets.items():
        for key in keys:
            if "REPLACE" not in str(next(s for s in by_kind["Secret"] if s["metadata"]["name"] == name)
                                    .get("stringData", {}).get(key, "REPLACE")):
                problems.append(f"secret.example.yaml: {name}/{key} must be a placeholder")
    return problems


def config_file_agrees(heads):
    """configs/deepseek-r1-pp2-tp8.toml (troupe head --config, outside Kubernetes) says the same."""
    if len(heads) != 1:
        return []
    args = heads[0][1].get("args", [])
    config = tomllib.loads((ROOT / "configs/deepseek-r1-pp2-tp8.toml").read_text())
    problems = []
    for key in ("model", "served-model-name", "port", "http-port", "pipeline-parallel-size",
                "tensor-parallel-size", "replicas", "max-model-len"):
        if str(config.get(key)) != str(flag_value(args, "--" + key)):
            problems.append(f"head: --{key} is {flag_value(args, '--' + key)}, "
                            f"configs/deepseek-r1-pp2-tp8.toml says {config.get(key)}")
    return problems


def check_semantics(root, troupe):
    if troupe and not pathlib.Path(troupe).exists():
        return [f"no troupe binary at {troupe} (build the troupe target first)"]
    docs = load_manifests(root)
    problems = check_semantics_of(docs, troupe)
    # Negative checks: the old configs/lws-troupe.yaml's mistakes must be caught.
    def mutated(change):
        copied = copy.deepcopy(docs)
        lws = next(d for _, d in copied if d["kind"] == "LeaderWorkerSet")
        change(lws["spec"]["leaderWorkerTemplate"])
        return check_semantics_of(copied, troupe)
    def head(t):
        return next(c for c in t["leaderTemplate"]["spec"]["containers"] if c["command"][1:2] == ["head"])
    cases = {
        "a head behind `sh -c ... &`": lambda t: head(t).update(
            command=["sh", "-c", "troupe head --config x.toml & exec troupe worker"], args=[]),
        "HTTP on 127.0.0.1": lambda t: head(t).update(args=[a if not a.startswith("--host") else "--host=127.0.0.1"
                                                              for a in head(t)["args"]]),
        "a probe on /healthz": lambda t: head(t)["readinessProbe"]["httpGet"].update(path="/healthz"),
        "liveness on /health (503 for minutes while a group reloads)":
            lambda t: head(t)["livenessProbe"]["httpGet"].update(path="/health"),
        "RecreateGroupOnPodRestart": lambda t: t.update(restartPolicy="RecreateGroupOnPodRestart"),
        "a worker advertising its host name": lambda t: t["workerTemplate"]["spec"]["containers"][0].update(
            env=[e for e in t["workerTemplate"]["spec"]["containers"][0]["env"]
                 if e["name"] != "TROUPE_ADVERTISE_HOST"]),
        "a grace period shorter than the drain": lambda t: t["leaderTemplate"]["spec"].update(
            terminationGracePeriodSeconds=10),
    }
    if troupe:
        cases["a flag troupe lacks"] = lambda t: head(t)["args"].append("--advertise=0.0.0.0")
    for what, change in cases.items():
        if not mutated(change):
            problems.append(f"the semantic checks accept {what}")
    return problems


def check_packages(root, troupe):
    problems = []
    lists = {}
    for name in ("build", "runtime"):
        rows = []
        for line in (root / f"tools/packages/{name}.txt").read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if fields:
                rows.append(fields)
                if len(fields) < 2 or fields[1] not in ("debian", "cuda"):
                    problems.append(f"{name}.txt: `{line}` needs a source, debian or cuda")
        lists[name] = rows
    names = {n: [r[0] for r in rows] for n, rows in lists.items()}
    for n, got in names.items():
        if len(set(got)) != len(got):
            problems.append(f"{n}.txt lists a package twice")
    # The readers: each calls tools/packages/list, none spells a package of the lists itself.
    readers = {
        "tools/bootstrap": ['packages/list" build debian'],
        "tools/gpu-bundle": ["tools/bootstrap", "tools/packages/list runtime debian"],
        "deploy/Dockerfile": ["tools/packages/list build cuda", "tools/bootstrap",
                              "packages/list runtime debian", "packages/list runtime cuda",
                              "COPY tools/packages/"],
    }
    for path, needles in readers.items():
        text = (root / path).read_text()
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
        for needle in needles:
            if needle not in code:
                problems.append(f"{path} does not read the lists (`{needle}` missing)")
        for pkg in names["build"] + names["runtime"]:
            if re.search(rf"(?<![\w./-]){re.escape(pkg)}(?![\w.-])", code) and pkg not in ("python3", "git", "cmake"):
                problems.append(f"{path} names the package {pkg} itself; it belongs in tools/packages/")
    dockerfile = (root / "deploy/Dockerfile").read_text()
    if not re.search(r"^ARG DEBIAN_IMAGE=debian:12(-slim)?$", dockerfile, re.M) or \
            len(re.findall(r"^FROM \$\{DEBIAN_IMAGE\} AS (build|runtime)$", dockerfile, re.M)) != 2:
        problems.append("deploy/Dockerfile: a build and a runtime stage, both on Debian 12")
    listed = subprocess.run([root / "tools/packages/list", "build", "debian", "--all"], capture_output=True,
                            text=True, check=True).stdout.split()
    if listed != [r[0] for r in lists["build"] if r[1] == "debian"]:
        problems.append("tools/packages/list build debian --all disagrees with build.txt")
    # runtime.txt's Debian packages are exactly those whose libraries troupe loads.
    if troupe and pathlib.Path(troupe).exists():
        ldd = subprocess.run(["ldd", troupe], capture_output=True, text=True, timeout=10).stdout
        libs = [(lib, path) for lib, path in re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M) if not BASE_LIBS.match(lib)]
        # dpkg knows a library by its /usr/lib or its /lib path (usrmerge): ask for both at once.
        paths = {p for _, path in libs for p in (path, str(pathlib.Path(path).resolve()))}
        paths |= {re.sub(r"^/lib/", "/usr/lib/", p) for p in paths} | {re.sub(r"^/usr/lib/", "/lib/", p) for p in paths}
        found = subprocess.run(["dpkg", "-S", *sorted(paths)], capture_output=True, text=True).stdout
        owner_of = {}
        for line in found.splitlines():
            pkg, _, owned = line.partition(": ")
            owner_of[owned.strip()] = pkg.split(":")[0]
        owners = set()
        for lib, path in libs:
            real = str(pathlib.Path(path).resolve())
            candidates = {path, real} | {re.sub(r"^/usr/lib/", "/lib/", p) for p in (path, real)} | \
                {re.sub(r"^/lib/", "/usr/lib/", p) for p in (path, real)}
            pkg = next((owner_of[c] for c in candidates if c in owner_of), None)
            if pkg is None:
                problems.append(f"ldd troupe: {lib} ({path}) belongs to no Debian package")
            else:
                owners.add(pkg)
        debian = {r[0] for r in lists["runtime"] if r[1] == "debian"}
        for pkg in sorted(owners - debian):
            problems.append(f"troupe loads a library of {pkg}, missing in tools/packages/runtime.txt")
        for pkg in sorted(debian - owners):
            problems.append(f"tools/packages/runtime.txt lists {pkg}, whose libraries troupe does not load")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["schemas", "semantics", "packages"])
    parser.add_argument("--root", required=True, type=pathlib.Path)
    parser.add_argument("--troupe", default=None)
    a = parser.parse_args()
    check = {"schemas": check_schemas, "semantics": check_semantics, "packages": check_packages}[a.mode]
    global ROOT
    ROOT = a.root.resolve()
    problems = check(ROOT, a.troupe)
    for p in problems:
        print(f"deploy {a.mode}: {p}")
    print(f"deploy {a.mode}: {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
