#!/usr/bin/env python3
"""troupe-demo's accuracy and speed per serving path, in one JSON file (bench/results/).

Each path answers the 200 problems of tests/fixtures/demo/problems.json greedily; a record per path:
  {"metric": "demo_accuracy_<path>", "value": exact fraction, "limit": transformers' fraction on the
   same problems (fp32 for bf16 weights, the dequantized weights for FP8), "fraction_of_limit",
   "tokens_per_second", "completion_tokens", "seconds", "device", "date", "commit"}

Paths:
  generate:<model dir>[:<device>]    `troupe generate --messages-jsonl` (all problems batched)
  cluster:<model dir>:<device>[:kill][:float32]
                                     a head with 2 replicas of PP=2 (4 workers on this machine) over
                                     HTTP, 48 streams at a time; `:float32` serves fp32 weights (the
                                     record then lists every text, to compare runs); `:kill` sends kill -9 to a worker of
                                     group 1 once every lane streams (the streams must all finish)

usage: bench/demo_accuracy_bench.py --troupe build/troupe --out bench/results/demo_accuracy.json \
           generate:tests/fixtures/models/troupe-demo generate:tests/fixtures/models/troupe-demo-fp8:cuda
"""
import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def answer_of(text):
    return text.rsplit("</think>", 1)[1].strip() if "</think>" in text else ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oracle_accuracy(problems, fp8):
    field = "transformers_fp8" if fp8 else "transformers_fp32"
    return sum(answer_of(p[field]) == p["answer"] for p in problems) / len(problems)


def run_generate(troupe, model, device, problems):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "problems.jsonl")
        with open(path, "w") as f:
            for p in problems:
                f.write(json.dumps({"messages": p["messages"]}) + "\n")
        command = [troupe, "generate", "--model", model, "--messages-jsonl", path, "--temperature", "0",
                   "--max-tokens", "400", "--log-level", "warn"]
        if device != "cpu":
            command += ["--device", device]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    lines = [json.loads(line) for line in out]
    summary = lines[-1]["summary"]
    texts = [line["text"] for line in lines[:-1]]
    correct = sum(answer_of(t) == p["answer"] for t, p in zip(texts, problems))
    return {"value": correct / len(problems), "tokens_per_second": summary["tokens_per_second"],
            "completion_tokens": summary["completion_tokens"], "seconds": summary["seconds"]}


def stream_chat(port, problem, on_first):
    body = json.dumps({"model": "troupe-demo", "messages": problem["messages"], "max_tokens": 400,
                       "temperature": 0, "stream": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    content, text, done, tokens, first = "", "", False, 0, True
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return None, 0, ""
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                piece = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
                tokens += 1 if piece else 0
                content += delta.get("content") or ""
                text += (delta.get("reasoning_content") or "") + (delta.get("content") or "")
                if first and piece:
                    first = False
                    on_first()
    return (content.strip() if done else None), tokens, (text if done else None)


def wait_healthy(port, seconds):
    until = time.time() + seconds
    while time.time() < until:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


def run_cluster(troupe, model, device, problems, kill, dtype=""):
    port, http = free_port(), free_port()
    token = "demo-bench"
    env = dict(os.environ, TROUPE_TOKEN=token, TROUPE_HEARTBEAT_MS="200", TROUPE_HEARTBEAT_TIMEOUT_MS="1500")
    status_file = tempfile.mktemp(suffix=".json")
    env["TROUPE_CLUSTER_STATUS_FILE"] = status_file
    logs = tempfile.mkdtemp()
    flags = ["--max-num-seqs", "64", "--reasoning-parser", "deepseek_r1", "--served-model-name", "troupe-demo"]
    if dtype:
        flags += ["--dtype", dtype]
    if device != "cpu":
        flags += ["--gpu-memory-utilization", "0.15"]  # the head's engine arguments size every stage
    procs = [subprocess.Popen([troupe, "head", "--port", str(port), "--http-port", str(http), "--model", model,
                               "--pp", "2", "--replicas", "2"] + flags, env=env, start_new_session=True,
                              stdout=open(os.path.join(logs, "head.log"), "w"), stderr=subprocess.STDOUT)]
    worker_flags = ["--device", device] if device != "cpu" else ["--num-threads", "1"]
    for i in range(4):
        procs.append(subprocess.Popen([troupe, "worker", "--join", f"127.0.0.1:{port}"] + worker_flags, env=env,
                                      start_new_session=True, stdout=open(os.path.join(logs, f"w{i}.log"), "w"),
                                      stderr=subprocess.STDOUT))
    try:
        if not wait_healthy(http, 180):
            for name in sorted(os.listdir(logs)):
                with open(os.path.join(logs, name)) as f:
                    print(f"--- {name} (last lines)\n" + "".join(f.readlines()[-15:]), file=sys.stderr)
            raise RuntimeError("cluster not healthy; logs in " + logs)
        lanes, begun, lock = 48, [0], threading.Lock()
        results = [None] * len(problems)
        counts = [0] * len(problems)
        texts = [None] * len(problems)
        next_index = [0]

        def lane():
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(problems):
                    return

                def first():
                    with lock:
                        begun[0] += 1
                try:
                    results[i], counts[i], texts[i] = stream_chat(http, problems[i], first)
                except Exception:
                    results[i] = None

        start = time.time()
        threads = [threading.Thread(target=lane) for _ in range(lanes)]
        for t in threads:
            t.start()
        killed = None
        if kill:
            while begun[0] < lanes and time.time() - start < 120:
                time.sleep(0.05)
            status = json.load(open(status_file))
            victim = next(n for n in status["nodes"] if n["state"] == "active" and n["group_id"] == 1
                          and n["stage_index"] == 1)
            os.kill(victim["pid"], signal.SIGKILL)
            killed = victim["pid"]
        for t in threads:
            t.join()
        seconds = time.time() - start
        failed = sum(r is None for r in results)
        correct = sum(r == p["answer"] for r, p in zip(results, problems))
        out = {"value": correct / len(problems), "failed_streams": failed, "killed_worker_pid": killed,
               "tokens_per_second": sum(counts) / seconds, "seconds": seconds}
        if dtype:
            out["dtype"], out["texts"] = dtype, texts
        return out
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    parser.add_argument("--problems", default=os.path.join(ROOT, "tests", "fixtures", "demo", "problems.json"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--device-name", default="")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    problems = json.load(open(args.problems))["problems"]
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    records = []
    for spec in args.paths:
        kind, model, *rest = spec.split(":")
        device = rest[0] if rest else "cpu"
        fp8 = "fp8" in os.path.basename(model.rstrip("/"))
        if kind == "generate":
            result = run_generate(args.troupe, model, device, problems)
        else:
            result = run_cluster(args.troupe, model, device, problems, kill="kill" in rest,
                                 dtype="float32" if "float32" in rest else "")
        limit = oracle_accuracy(problems, fp8)
        record = {"metric": f"demo_accuracy_{kind}_{os.path.basename(model.rstrip('/'))}_{device}"
                            + ("_float32" if "float32" in rest else "") + ("_kill9" if "kill" in rest else ""),
                  "limit": limit, "fraction_of_limit": result["value"] / limit if limit else None,
                  "limit_meaning": "transformers' exact fraction on the same problems", **result,
                  "device": args.device_name or device, "date": datetime.date.today().isoformat(), "commit": commit}
        records.append(record)
        print(json.dumps(record), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
