"""Parallel trials on one machine with KerasTuner's chief/worker mode over gRPC.

KerasTuner's distributed tuning runs one process as the chief, which holds the oracle and serves
it over gRPC, and any number of worker processes that ask it for trials, run them and report back.
The roles come from environment variables: `KERASTUNER_TUNER_ID` ("chief" or a worker id),
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`. `run_stage_parallel` starts the chief and N
workers on 127.0.0.1, each one `python -m recipes.search.stage SEARCH_DIR STAGE`, and waits.

The chief saves the oracle's state whenever a trial starts or ends, and it only ever acts on a
worker's request; so once every worker has exited it has nothing left to do and is stopped (its
own exit check polls every 20 s). A crashed worker costs only its trial: resuming the search runs
that trial again.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LOCALHOST = "127.0.0.1"
POLL_S = 1.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_stage_parallel(search_dir: str | Path, stage: int, workers: int) -> None:
    """Runs a planned stage with `workers` worker processes and a chief process.

    Args:
        search_dir: the search directory holding the stage's plan.
        stage: the stage number.
        workers: the number of trials that run at the same time (>= 2).

    Raises:
        RuntimeError: a worker exited with an error (its trial is rerun when the search resumes).
    """
    if workers < 2:
        raise ValueError(f"a parallel stage needs at least 2 workers, got {workers}")
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    environment = {
        **os.environ,
        "PYTHONPATH": python_path,
        "KERASTUNER_ORACLE_IP": LOCALHOST,
        "KERASTUNER_ORACLE_PORT": str(_free_port()),
    }
    command = [sys.executable, "-m", "recipes.search.stage", str(search_dir), str(stage)]
    chief = subprocess.Popen(command, env={**environment, "KERASTUNER_TUNER_ID": "chief"})
    processes = [chief]
    try:
        for index in range(workers):
            processes.append(
                subprocess.Popen(
                    command, env={**environment, "KERASTUNER_TUNER_ID": f"tuner{index}"}
                )
            )
        while any(process.poll() is None for process in processes[1:]):
            if chief.poll() not in (None, 0):
                raise RuntimeError(
                    f"the chief of stage {stage} (the oracle's gRPC server on port "
                    f"{environment['KERASTUNER_ORACLE_PORT']}) exited with code {chief.returncode}"
                )
            time.sleep(POLL_S)
        exit_codes = [process.returncode for process in processes[1:]]
    finally:
        for process in processes:
            _stop(process)
    failed = [code for code in exit_codes if code != 0]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {workers} workers of stage {stage} failed (exit codes {failed}); "
            "see their output above. Run the search again to resume it: their trials are rerun."
        )
