"""The spark-submit application of the DAG's spark-submit mode: one stage of a run.

    spark-submit --master spark://HOST:PORT jobs/interfaces/submit_stage.py \
        --stage ingest --date 2026-11-25 --run-id R [--result FILE]

does in the driver spark-submit started what an in-process stage task does
(``jobs.orchestration.pipeline.run_stage``: the key's check, the run's marker and heartbeat,
the stage's ``run``, its OpenLineage events), with ``jobs.lake.spark.build_spark``'s session
(master and memory from spark-submit; the ``jobs`` package shipped to the executors). The
key comes from ``FAIRSHELF_PSEUDONYM_KEY`` in the environment, never from an argument.
``--result`` gets ``{"summary": ...}`` or ``{"error": ...}`` as JSON: the operator
(``jobs.interfaces.spark_submit``) returns the summary to Airflow for the record task.
Standalone, without a run, each stage's own ``main()`` runs under spark-submit the same way
(``spark-submit jobs/stages/ingest.py --date D``).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from jobs.orchestration.pipeline import ORDER, run_stage

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, choices=ORDER)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--result", type=Path, default=None, help="where the summary or error goes (JSON)")
    args = parser.parse_args(argv)
    try:
        result, code = {"summary": run_stage(args.stage, args.date, args.run_id)}, 0
    except Exception as exc:
        traceback.print_exc()
        result, code = {"error": str(exc) or type(exc).__name__}, 1
    text = json.dumps(result, default=str)
    if args.result:
        args.result.write_text(text)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
