#!/usr/bin/env python3
"""Prefect 3: W1 as `noop.map(produce())` inside a flow with the default task runner
(ThreadPoolTaskRunner, its default max_workers), the fan-in a task given the mapped
futures; W2 as 200 task calls inside a flow (a task called in a flow runs in the flow's
thread, one after the other). Task options are Prefect's defaults.

usage: peer_prefect.py w1|w2
Without PREFECT_API_URL, Prefect starts its own temporary local server for the run
(ephemeral mode, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=true); run.py gives each benchmark
run a PREFECT_HOME of its own, kept across runs like a user's ~/.prefect.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
# No usage reports: this machine has no route out, and a failing DNS lookup is not
# Prefect's cost to pay here.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect import flow, task

import workload

produce = task(workload.produce)
noop = task(workload.noop)
fanin = task(workload.fanin)
inc = task(workload.inc)


@flow
def w1() -> int:
    items = produce()
    mapped = noop.map(items)
    return fanin(mapped.result())


@flow
def w2() -> int:
    value = 0
    for _ in range(workload.CHAIN):
        value = inc(value)
    return value


if __name__ == "__main__":
    if sys.argv[1:] == ["w1"]:
        workload.check_w1(w1())
    elif sys.argv[1:] == ["w2"]:
        workload.check_w2(w2())
    else:
        raise SystemExit("usage: peer_prefect.py w1|w2")
