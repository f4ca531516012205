#!/usr/bin/env python3
"""Slow and greedy clients against a running rollgate (SECURITY.md, "Slow and greedy clients").

    python3 bench/slow_clients.py --url 127.0.0.1:8080 --pid $(pgrep -n rollgate) [--scenario all]

Scenarios:
  loris    2,000 slowloris heads (a byte every 8 s) and 300 bodies sent a byte every 8 s;
           counts the connections still open at 15, 25, 40 and 70 s, and times /healthz.
  greedy   16 unsigned deliveries that declare 25 MiB, send 24 MiB and stall; the service's
           RSS before and after, and what each got.
  declared a request head declaring 30 MiB and no body: the time to the 413.

Standard library only. Run it from another host or with a high `ulimit -n` (2,300 sockets).
"""
import argparse
import asyncio
import time


def rss_mib(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


async def healthz(host, port, limit=30.0):
    start = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await w.drain()
        line = await asyncio.wait_for(r.readline(), limit)
        w.close()
        return line.decode().strip(), time.monotonic() - start
    except Exception as e:  # noqa: BLE001 - report whatever happened
        return f"no answer ({type(e).__name__})", time.monotonic() - start


async def metric_lines(host, port, prefix):
    r, w = await asyncio.open_connection(host, port)
    w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await w.drain()
    text = (await r.read()).decode()
    w.close()
    return [line for line in text.splitlines() if line.startswith(prefix)]


async def trickle(host, port, head, byte, every, state):
    try:
        r, w = await asyncio.open_connection(host, port)
    except OSError:
        state["refused"] += 1
        return
    state["open"] += 1
    try:
        w.write(head)
        await w.drain()
        while True:
            try:
                data = await asyncio.wait_for(r.read(1024), every)
                if not data:
                    break
            except asyncio.TimeoutError:
                w.write(byte)
                await w.drain()
    except OSError:
        pass
    state["open"] -= 1
    state["closed"] += 1


async def loris(host, port, pid):
    heads = {"open": 0, "closed": 0, "refused": 0}
    bodies = {"open": 0, "closed": 0, "refused": 0}
    tasks = []
    t0 = time.monotonic()
    for i in range(2000):
        head = f"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode()
        tasks.append(asyncio.create_task(trickle(host, port, head, b"a", 8.0, heads)))
    for _ in range(300):
        head = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
        tasks.append(asyncio.create_task(trickle(host, port, head, b" ", 8.0, bodies)))
    marks = [15, 25, 40, 70]
    probes = []
    while marks:
        await asyncio.sleep(1.0)
        status, took = await healthz(host, port)
        probes.append(took)
        now = time.monotonic() - t0
        if now >= marks[0]:
            marks.pop(0)
            print(f"t={now:5.1f}s  slowloris still open {heads['open']:5d} (closed by server {heads['closed']}), "
                  f"slow bodies still open {bodies['open']:4d} (closed {bodies['closed']}); /healthz {status!r} in {took*1000:.0f} ms; "
                  f"RSS {rss_mib(pid) or 0:.0f} MiB")
    print("  rollgate's count:", await metric_lines(host, port, "rollgate_http_closed_total"))
    probes.sort()
    print(f"/healthz during the attack: {len(probes)} probes, median {probes[len(probes)//2]*1000:.0f} ms, max {probes[-1]*1000:.0f} ms")
    for t in tasks:
        t.cancel()


async def greedy(host, port, pid):
    before = rss_mib(pid)
    results = []

    async def one(i):
        r, w = await asyncio.open_connection(host, port)
        w.write(f"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: issues\r\nContent-Length: {25 * 1024 * 1024}\r\n\r\n".encode())
        chunk = b" " * (1024 * 1024)
        sent = 0
        try:
            for _ in range(24):
                w.write(chunk)
                await asyncio.wait_for(w.drain(), 10)
                sent += 1
        except (OSError, asyncio.TimeoutError):
            pass
        try:
            line = (await asyncio.wait_for(r.readline(), 5)).decode().strip() or "(closed)"
        except asyncio.TimeoutError:
            line = "(no answer within 5 s: held)"
        except OSError as e:
            line = f"(connection reset: {type(e).__name__})"
        results.append((i, sent, line))
        return w

    writers = await asyncio.gather(*(one(i) for i in range(16)))
    await asyncio.sleep(2)
    after = rss_mib(pid)
    answers = {}
    for _, _, line in results:
        answers[line] = answers.get(line, 0) + 1
    print(f"16 stalled 25 MiB deliveries: RSS {before or 0:.0f} -> {after or 0:.0f} MiB; what the clients saw: {answers}")
    print("  rollgate's count:", await metric_lines(host, port, "rollgate_deliveries_total"))
    for w in writers:
        w.close()


async def declared(host, port):
    r, w = await asyncio.open_connection(host, port)
    start = time.monotonic()
    w.write(f"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n".encode())
    await w.drain()
    try:
        line = await asyncio.wait_for(r.readline(), 30)
        rest = await asyncio.wait_for(r.read(), 30)
        closed = "closed" if rest is not None else "open"
    except asyncio.TimeoutError:
        line, closed = b"(no answer in 30 s)", "open"
    print(f"Content-Length 30 MiB, no body sent: {line.decode().strip()!r} after {(time.monotonic()-start)*1000:.0f} ms, connection {closed}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="127.0.0.1:8080")
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--scenario", default="all", choices=["all", "loris", "greedy", "declared"])
    a = ap.parse_args()
    host, port = a.url.rsplit(":", 1)
    port = int(port)
    if a.scenario in ("all", "declared"):
        await declared(host, port)
    if a.scenario in ("all", "greedy"):
        await greedy(host, port, a.pid)
    if a.scenario in ("all", "loris"):
        await loris(host, port, a.pid)


if __name__ == "__main__":
    asyncio.run(main())
