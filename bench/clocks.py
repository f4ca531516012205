#!/usr/bin/env python3
"""Wall-clock time of `rollgate report` and `rollgate sweep` on a large SQLite store.

Creates a temporary database with the release binary (`rollgate migrate`), fills it directly
with sqlite3 (fixed seed): 100,000 issues, 1,000,000 history rows (each issue's lifecycle from
planning to release between 2026-05-01 and 2026-11-30, with the records the monthly report
reads) and 2 timers per issue, 1,000 of them due at the sweep time. Then times, 5 runs each,
process start included (what an operator sees):
  1. rollgate report --month 2026-11                       (target < 2 s)
  2. rollgate sweep --at 2026-12-01T06:00:00Z --dry-run    (1,000 of 100,000 due; target < 1 s)
  3. rollgate sweep --at 2026-11-20T00:00:00Z --dry-run    (nothing due: the lookup alone)
Prints median and min-max, removes its temp dir. Standard library only.
Rerun: `cargo build --release --quiet && python3 bench/clocks.py` (KEEP=1 keeps the database).
"""
import json, os, random, shutil, sqlite3, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "rollgate")
ISSUES, HISTORY, DUE, RUNS = 100_000, 1_000_000, 1_000, 5
DAY, HOUR = 86_400_000, 3_600_000


def ms(s):
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp() * 1000)


START, END = ms("2026-05-01T00:00:00"), ms("2026-12-01T00:00:00")
SWEEP_AT, QUIET_AT = "2026-12-01T06:00:00Z", "2026-11-20T00:00:00Z"
SWEEP_MS = ms("2026-12-01T06:00:00")
TYPES = [("bug", 30, {"single-client": "1", "cross-client": "2"}), ("small-change", 25, {"single-client": "2", "cross-client": "3"}),
         ("enhancement", 30, {"single-client": "3", "cross-client": "3"}), ("major-feature", 15, {"single-client": "4", "cross-client": "4"})]
LANE = {"bug": "B", "small-change": "A", "enhancement": "A", "major-feature": "A"}
ROLLOUT_LABEL = {"1": "rollout/1-direct", "2": "rollout/2-notified", "3": "rollout/3-demoed", "4": "rollout/4-piloted"}
# Dev release to client release, in days, by rollout type.
SPREAD = {"1": (0.1, 2), "2": (0.5, 4), "3": (2, 9), "4": (6, 24)}
iso = lambda t: datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def lifecycle(rng, n, hist):
    """Appends issue n's history rows; returns (snapshot JSON, updated_at, last status)."""
    key = f"github:octo/app#{n}"
    kind = rng.choices(TYPES, weights=[w for _, w, _ in TYPES])[0]
    typ, scope = kind[0], rng.choice(["single-client", "cross-client"])
    rollout, lane, late = kind[2][scope], LANE[typ], rng.random() < 0.10
    t = created = rng.randint(START, END - 3 * DAY)
    fields = {"type": typ, "scope": scope, "lane": lane, "status": "planning"}
    rows = []
    add = lambda at, field, old, new, src="tracker", actor="a": rows.append((key, at, field, old, new, actor, src, f"d{n}-{len(rows)}"))
    add(t, "type", None, typ)
    add(t, "status", None, "planning", "policy", "rollgate[bot]")
    if not late:
        add(t, "rollout", None, rollout, "policy", "rollgate[bot]"); fields["rollout"] = rollout

    def move(to, after_days):
        nonlocal t
        t += int(rng.uniform(*after_days) * DAY)
        if t >= END:
            return False
        add(t, "status", fields["status"], to, "tracker", "pm"); fields["status"] = to
        return True
    decision = rng.choices(["accept", "park", "decline"], weights=[85, 9, 6])[0]
    t += int(rng.uniform(0.5, 6) * DAY)
    if t < END:
        add(t, "decision", None, decision, "tracker", "pm"); fields["decision"] = decision
        if decision == "accept" and move("decided", (0, 0.01)) and move("in-dev", (0.5, 4)):
            if late:
                t += HOUR; add(t, "rollout", None, rollout, "tracker", "pm"); add(t, "rollout.assigned-late", None, "in-dev", "policy", "rollgate[bot]")
                fields["rollout"] = rollout
            if move("dev-released", (2, 20)):
                dev, ok = t, True
                if rollout in ("3", "4"):
                    ok = move("rollout-confirmed", (0.2, 1.5)) and move("in-rollout", (0.2, 1.5))
                    if ok and rollout == "4":
                        t += int(rng.uniform(1, 5) * DAY)
                        if t < END:
                            add(t, "pilot.retro", None, "go" if rng.random() < 0.9 else "hold", "policy", "rollgate[bot]")
                lo, hi = SPREAD[rollout]
                if ok and move("released", (max(0.01, lo - (t - dev) / DAY), max(0.02, hi - (t - dev) / DAY))):
                    add(t, "release.artifacts", None, "complete" if rng.random() < 0.95 else "missing: sales-kit", "policy", "rollgate[bot]")
                    add(t, "release.rollout", None, rollout, "policy", "rollgate[bot]")
                    for flag, share, within in (("flags.escalated", 0.03, 10), ("flags.rolled-back", 0.02, 5)):
                        at = t + int(rng.uniform(0.1, within) * DAY)
                        if rng.random() < share and at < END:
                            add(at, flag, None, "on", "tracker", "support")
    hist.extend(rows)
    labels = [f"type/{typ}", f"scope/{scope}", f"lane/{lane}", f"status/{fields['status']}"]
    labels += [ROLLOUT_LABEL[fields["rollout"]]] if "rollout" in fields else []
    labels += [f"decision/{fields['decision']}"] if "decision" in fields else []
    updated = max(r[1] for r in rows)
    snap = {"key": key, "title": f"item {n}", "body": "", "url": f"https://github.com/octo/app/issues/{n}", "open": True,
            "state_reason": None, "author": "a", "labels": labels, "assignees": [], "created_at": iso(created),
            "updated_at": iso(updated), "closed_at": None}
    return (key, json.dumps(snap), updated), fields["status"]


def fill(db):
    rng = random.Random(20261121)
    issues, hist, rolling = [], [], []
    for n in range(1, ISSUES + 1):
        row, status = lifecycle(rng, n, hist)
        issues.append(row)
        if status in ("dev-released", "rollout-confirmed", "in-rollout"):
            rolling.append(row[0])
    # Top up to exactly 1M rows with flag toggles by QA leads, as the tracker records them.
    while len(hist) < HISTORY:
        key, at = rng.choice(issues)[0], rng.randint(START, END - 1)
        flag = rng.choice(["flags.needs-demo", "flags.needs-client-comms", "flags.risk-breaking"])
        hist.append((key, at, flag, None, "on", "qa", "tracker", f"pad{len(hist)}"))
    assert len(hist) == HISTORY, len(hist)
    hist.sort(key=lambda r: r[1])  # inserted in arrival order, as the service would
    due = set(rng.sample(rolling, DUE))
    timers = []
    for key, _, _ in issues:
        # A due item has used its at-risk share of the budget; its breach is still ahead.
        risk = SWEEP_MS - rng.randint(60_000, 3 * DAY) if key in due else SWEEP_MS + rng.randint(HOUR, 20 * DAY)
        timers += [(key, "sla-at-risk", risk), (key, "sla-breached", max(risk, SWEEP_MS) + rng.randint(1, 10) * DAY)]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=OFF")
    with con:
        con.executemany("INSERT INTO issues (issue_key, snapshot, updated_at) VALUES (?, ?, ?)", issues)
        con.executemany("INSERT INTO history (issue_key, at, field, old_value, new_value, actor, source, delivery) VALUES (?,?,?,?,?,?,?,?)", hist)
        con.executemany("INSERT INTO timers (issue_key, purpose, due_at) VALUES (?, ?, ?)", timers)
    released = con.execute("SELECT count(*) FROM history WHERE field='status' AND new_value='released' AND at >= ? AND at < ?",
                           (ms("2026-11-01T00:00:00"), END)).fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)"); con.close()
    return len(rolling), released


def timed(args, env, cwd):
    out, secs = None, []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        p = subprocess.run([BIN, *args], env=env, cwd=cwd, capture_output=True, text=True)
        secs.append(time.perf_counter() - t0)
        if p.returncode != 0:
            sys.exit(f"rollgate {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        out = out or p.stdout
    return out, secs


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run `cargo build --release --quiet` first")
    work = tempfile.mkdtemp(prefix="rollgate-clocks-")
    try:
        db = os.path.join(work, "rollgate.db")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ROLLGATE_DATABASE_URL": f"sqlite://{db}",
               "ROLLGATE_POLICIES": os.path.join(ROOT, "policies"), "ROLLGATE_LOG": "warn"}
        subprocess.run([BIN, "migrate"], env=env, cwd=work, check=True, capture_output=True)
        t0 = time.perf_counter()
        rolling, released = fill(db)
        print(f"filled {ISSUES:,} issues, {HISTORY:,} history rows, {2 * ISSUES:,} timers ({DUE:,} issues due) "
              f"in {time.perf_counter() - t0:.0f} s; {released:,} releases in 2026-11; {rolling:,} items rolling; "
              f"db {os.path.getsize(db) / 2**20:.0f} MiB")
        rows = []
        for name, args in (("report --month 2026-11 (100k issues, 1M history rows)", ["report", "--month", "2026-11"]),
                           (f"sweep --dry-run, {DUE:,} of {ISSUES:,} due", ["sweep", "--at", SWEEP_AT, "--dry-run"]),
                           ("sweep --dry-run, nothing due", ["sweep", "--at", QUIET_AT, "--dry-run"])):
            out, secs = timed(args, env, work)
            print(f"\n$ rollgate {' '.join(args)}   (first lines of run 1)")
            print("\n".join("  " + l for l in out.splitlines()[:6 if args[0] == "report" else 1]))
            rows.append((name, statistics.median(secs), min(secs), max(secs)))
        print(f"\n{'command':<58} {'median':>8} {'min':>8} {'max':>8}   ({RUNS} runs)")
        for name, med, lo, hi in rows:
            print(f"{name:<58} {med:>7.3f}s {lo:>7.3f}s {hi:>7.3f}s")
        if os.environ.get("KEEP"):
            print(f"\nkept {db}"); work = None
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
