"""``python -m jobs.interfaces.environment_check``: import every dependency fairshelf needs,
one at a time, and say which imported and which did not (``make setup`` ends with it).

Each import is guarded against everything it can raise, ``SystemExit`` included: importing
great_expectations without PySpark Connect's requirements made pyspark print "Skipping
doctests" and exit 0 from inside the import, so a one-line ``python -c "import ..."``
check could stop half-way and still succeed. Here every module is tried, one line each,
and the exit code is 1 unless all of them imported.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time

MODULES = ("jobs", "pyspark", "pyspark.sql.connect", "deltalake", "implicit", "airflow",
           "great_expectations", "fairlearn", "typer", "rich", "openlineage.client")


def try_import(name: str) -> str | None:
    """None when ``name`` imports; else what went wrong, in one line. What the import prints
    (Great Expectations logs hundreds of INFO lines) is shown only when it fails."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 (SystemExit and KeyboardInterrupt are failures too)
        said = (str(exc).strip() or printed.getvalue().strip() or "no message").splitlines()
        return f"{type(exc).__name__}: {said[-1] if not str(exc).strip() else said[0]}"
    return None


def main(modules: tuple[str, ...] = MODULES) -> int:
    failed = []
    for name in modules:
        start = time.perf_counter()
        problem = try_import(name)
        print(f"{'ok    ' if problem is None else 'FAILED'} {name} ({time.perf_counter() - start:.1f} s)"
              + (f": {problem}" if problem else ""), flush=True)
        if problem:
            failed.append(name)
    if failed:
        print(f"fairshelf environment NOT ready: {', '.join(failed)} did not import", file=sys.stderr)
        return 1
    print(f"fairshelf environment ready: {len(modules)} modules imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
