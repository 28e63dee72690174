#!/usr/bin/env python3
"""Luigi, local scheduler, workers=2 (with more than one worker Luigi runs each task in a
forked process of its own). Luigi decides what is done from its targets, so each task
writes its result as JSON to a file of a fresh work directory.

usage: peer_luigi.py w1|w2 WORKDIR
W1: `Produce` writes the list; `FanIn.run` reads it and yields one `Noop(index)` per item
(Luigi's dynamic dependencies: the fan-out is known at run time), then reads their
results in item order. W2: `Inc(200)` requires `Inc(199)` ... requires `Inc(1)`, which
reads 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from typing import Any

import luigi

import workload

WORK = ""


def _write(target: luigi.LocalTarget, value: Any) -> None:
    with target.open("w") as f:
        json.dump(value, f)


def _read(target: luigi.LocalTarget) -> Any:
    with target.open("r") as f:
        return json.load(f)


class Produce(luigi.Task):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(WORK, "produce.json"))

    def run(self) -> None:
        _write(self.output(), workload.produce())


class Noop(luigi.Task):
    index = luigi.IntParameter()

    def requires(self) -> Produce:
        return Produce()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(WORK, f"noop-{self.index}.json"))

    def run(self) -> None:
        item = _read(self.input())[self.index]
        _write(self.output(), workload.noop(item))


class FanIn(luigi.Task):
    def requires(self) -> Produce:
        return Produce()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(WORK, "fanin.json"))

    def run(self):  # type: ignore[no-untyped-def]
        items = _read(self.input())
        mapped = yield [Noop(index=i) for i in range(len(items))]
        _write(self.output(), workload.fanin([_read(t) for t in mapped]))


class Inc(luigi.Task):
    n = luigi.IntParameter()

    def requires(self) -> list[luigi.Task]:
        return [Inc(n=self.n - 1)] if self.n > 1 else []

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(WORK, f"inc-{self.n}.json"))

    def run(self) -> None:
        previous = _read(self.input()[0]) if self.n > 1 else 0
        _write(self.output(), workload.inc(previous))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("w1", "w2"):
        raise SystemExit("usage: peer_luigi.py w1|w2 WORKDIR")
    WORK = sys.argv[2]
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    final = FanIn() if sys.argv[1] == "w1" else Inc(n=workload.CHAIN)
    ok = luigi.build([final], local_scheduler=True, workers=2, log_level="WARNING")
    if not ok:
        raise SystemExit("luigi.build reported a failure")
    value = _read(final.output())
    (workload.check_w1 if sys.argv[1] == "w1" else workload.check_w2)(value)
