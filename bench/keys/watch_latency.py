#!/usr/bin/env python3
"""Watch notification latency: N long-poll watchers on one key, one PUT, time until each watcher has its event.

usage: watch_latency.py URL WATCHERS ROUNDS   prints the median and p99 (ms) over all watchers and rounds.
"""
import asyncio
import statistics
import sys
import time
import urllib.parse

URL = urllib.parse.urlparse(sys.argv[1])
WATCHERS, ROUNDS = int(sys.argv[2]), int(sys.argv[3])


async def watch(key, ready, results):
    reader, writer = await asyncio.open_connection(URL.hostname, URL.port)
    writer.write(f"GET /v2/keys/{key}?wait=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # headers arrive at once: the watch is in place
    ready.release()
    await reader.readuntil(b'"action"')
    results.append(time.perf_counter())
    writer.close()


async def put(key):
    reader, writer = await asyncio.open_connection(URL.hostname, URL.port)
    writer.write(f"PUT /v2/keys/{key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 f"Content-Length: 7\r\n\r\nvalue=1".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def main():
    latencies = []
    for round_number in range(ROUNDS):
        key = f"watched/{round_number}"
        ready = asyncio.Semaphore(0)
        arrivals = []
        tasks = [asyncio.create_task(watch(key, ready, arrivals)) for _ in range(WATCHERS)]
        for _ in range(WATCHERS):
            await ready.acquire()
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        await put(key)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        latencies += [(arrival - start) * 1000 for arrival in arrivals]
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{statistics.median(latencies):.2f} {p99:.2f}")


asyncio.run(main())
