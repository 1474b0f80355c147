"""One worker process of a parallel offline plan (`python -m nomadrig.plan.worker`).

The parent writes two pickles on stdin: its `sys.path` (so this process finds
the same `nomadrig` and `stacks`, installed or not), then `(team, specs)`. The
worker runs the programs for those boxes and writes one pickle on stdout:
`("ok", [RecordedResource, ...])` or `("error", exception)`. A plain
subprocess rather than `multiprocessing`: spawn would re-run the caller's main
script, and fork would copy another thread's locks.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Any, BinaryIO


def run(source: BinaryIO, sink: BinaryIO) -> None:
    for entry in reversed(pickle.load(source)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from nomadrig.plan import run_programs

    team, specs = pickle.load(source)
    result: tuple[str, Any]
    try:
        result = ("ok", run_programs(team, specs).resources)
    except Exception as exc:  # noqa: BLE001 (every failure goes back to the parent, which raises it)
        result = ("error", exc)
    try:
        data = pickle.dumps(result)
    except Exception:  # noqa: BLE001 (an exception that cannot be pickled still reaches the parent, as text)
        data = pickle.dumps(("error", RuntimeError("plan worker failed:\n" + traceback.format_exc())))
    sink.write(data)
    sink.flush()


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent reports it; a worker just ends, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Anything a program prints must not corrupt the result: fd 1 goes to stderr, the result to a copy of stdout.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    with os.fdopen(result_fd, "wb") as sink:
        run(sys.stdin.buffer, sink)


if __name__ == "__main__":
    main()
