#!/usr/bin/env python3
"""Latency of POST /api/v1/evaluate, as a Jira workflow validator would call it.

Starts the release binary on loopback with a temporary database, loads 200 issues through
signed webhooks, then asks `evaluate` for status changes: one caller at a time (a validator
is synchronous), then 4 at once. Prints p50/p90/p99/max. Rerun: `python3 bench/evaluate.py`
(builds with `cargo build --release` first if needed). Standard library only.
"""
import hashlib, hmac, http.client, json, os, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "rollgate")
PORT, SECRET, ISSUES, REQUESTS = 18283, b"bench-secret", 200, 2000


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def report(name, lat):
    ms = [x * 1000 for x in lat]
    print(f"{name}: n={len(ms)} p50={percentile(ms, .5):.2f} ms p90={percentile(ms, .9):.2f} ms "
          f"p99={percentile(ms, .99):.2f} ms max={max(ms):.2f} ms")


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp()
    env = dict(os.environ, ROLLGATE_LISTEN=f"127.0.0.1:{PORT}", ROLLGATE_DATABASE_URL=f"sqlite://{work}/rollgate.db",
               ROLLGATE_POLICIES=os.path.join(ROOT, "policies"), ROLLGATE_GITHUB_WEBHOOK_SECRET=SECRET.decode(),
               ROLLGATE_LOG="warn")
    env.pop("ROLLGATE_GITHUB_TOKEN", None)
    server = subprocess.Popen([BIN, "serve"], cwd=work, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT); c.request("GET", "/readyz")
                if c.getresponse().status == 200: break
            except OSError: time.sleep(0.05)
        base = json.load(open(os.path.join(ROOT, "tests/fixtures/github/issues.opened.json")))
        c = http.client.HTTPConnection("127.0.0.1", PORT)
        for n in range(1, ISSUES + 1):
            base["issue"]["number"] = n
            base["issue"]["labels"] = [{"name": "type/enhancement"}, {"name": "scope/cross-client"}]
            body = json.dumps(base).encode()
            sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            c.request("POST", "/webhooks/github", body, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": f"load-{n}",
                                                           "X-Hub-Signature-256": sig, "Content-Type": "application/json"})
            c.getresponse().read()
        repo = base["repository"]["full_name"]
        # Wait until the last issue has been processed (evaluate knows it).
        ask = lambda conn, n, to: conn.request("POST", "/api/v1/evaluate", json.dumps({"issue": f"{repo}#{n}", "to_status": to}),
                                               {"Content-Type": "application/json"})
        for _ in range(200):
            ask(c, ISSUES, "released"); r = c.getresponse(); r.read()
            if r.status == 200: break
            time.sleep(0.05)
        targets = ["released", "decided", "in-dev", "dev-released"]

        def run(count, out, offset):
            conn = http.client.HTTPConnection("127.0.0.1", PORT)
            for i in range(count):
                t = time.perf_counter()
                ask(conn, (offset + i) % ISSUES + 1, targets[i % len(targets)])
                r = conn.getresponse(); body = json.loads(r.read())
                out.append(time.perf_counter() - t)
                assert r.status == 200 and "allow" in body, body

        lat = []; run(REQUESTS, lat, 0); report("evaluate, 1 caller ", lat)
        lats = [[] for _ in range(4)]
        ts = [threading.Thread(target=run, args=(REQUESTS // 4, lats[k], k * 50)) for k in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        report("evaluate, 4 callers", [x for l in lats for x in l])
    finally:
        server.terminate(); server.wait()


if __name__ == "__main__":
    sys.exit(main())
