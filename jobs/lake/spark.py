"""The one place a SparkSession is built. Stages receive it; they never create one."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

import jobs
from jobs.core.config import Config, ConfigError

# Spark's default redaction pattern, plus the pseudonymization key's name: a Spark setting
# or environment variable named like it has its value replaced by *********(redacted) in
# the logs, the Spark UI's environment page and the event log. fairshelf passes the key to
# no Spark setting (the driver reads FAIRSHELF_PSEUDONYM_KEY; the executors get the HMAC
# pads as the row of a broadcast DataFrame, never a literal: jobs.shared.privacy).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|pseudonym"

# The Delta Lake jars table_engine "delta-spark" needs (the pinned delta-spark 4.4.1 for
# Spark 4.x, Scala 2.13), and a class each provides.
DELTA_JARS = {
    "io.delta:delta-spark_2.13:4.4.1": "io.delta.sql.DeltaSparkSessionExtension",
    "io.delta:delta-storage:4.4.1": "io.delta.storage.LogStore",
}

# Spark's JVM logging at ERROR (package data): for commands a person watches.
QUIET_LOG4J2 = Path(str(resources.files("jobs.lake").joinpath("log4j2-quiet.properties")))


def quiet_java_options(properties: Path = QUIET_LOG4J2) -> str:
    """The driver's JVM option that makes it log with ``properties`` (log4j2)."""
    return f"-Dlog4j2.configurationFile={properties.resolve().as_uri()}"


def build_spark(config: Config, app_name: str = "fairshelf", *, quiet: bool = False) -> SparkSession:
    """A SparkSession for ``config``: local by default, any master the config names.

    Under ``spark-submit`` the master, driver memory and deploy settings are spark-submit's.
    On any master that is not ``local``, the fairshelf code (the ``jobs`` package, zipped)
    is shipped to the executors with ``addPyFile``, so they need only the pinned
    dependencies (requirements.lock) in their Python, not this checkout or wheel. The Delta
    data source of ``jobs.lake.tables`` is registered on the session, so the default table
    engine needs no JVM jars; engine "delta-spark" fails here, with what to do, when the
    Delta Lake jars are not on the classpath. ``quiet`` (the CLI without -v) starts the
    driver's JVM with ``log4j2-quiet.properties``, so Spark prints only errors from its
    first line on; otherwise (Airflow tasks, -v) Spark logs as it always does. The option
    applies when this call starts the JVM (not to a session that already runs).
    """
    # Locally, Python workers must run this interpreter (the project's venv); Spark's
    # planner workers (Python data sources) read only the environment for it. On a
    # cluster, PYSPARK_PYTHON may name the executors' own interpreter.
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if config.spark.master.startswith("local"):
        os.environ["PYSPARK_PYTHON"] = sys.executable
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        builder = builder.master(config.spark.master).config("spark.driver.memory", config.spark.driver_memory)
    builder = (
        builder
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.redaction.regex", REDACTION_REGEX)
    )
    if quiet:
        builder = builder.config("spark.driver.extraJavaOptions", quiet_java_options())
    if config.spark.table_engine == "delta-spark":
        builder = builder.config(
            "spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension"
        ).config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    spark = builder.getOrCreate()
    try:
        if config.spark.table_engine == "delta-spark":
            require_delta_jars(spark)
        if not spark.sparkContext.master.startswith("local"):
            folder = tempfile.mkdtemp(prefix="fairshelf-py-")
            atexit.register(shutil.rmtree, folder, True)
            spark.sparkContext.addPyFile(str(jobs_archive(Path(folder))))
    except Exception:
        spark.stop()
        raise
    spark.sparkContext.setLogLevel("ERROR")
    from jobs.lake.tables import register_data_source

    # After addPyFile: a Python function (the data source too) carries the session's
    # Python includes as they are when it is registered.
    register_data_source(spark)
    return spark


def launched_by_spark_submit() -> bool:
    """True in a driver that spark-submit started: its JVM is already running, with
    spark-submit's master and memory (PySpark connects to it through this variable)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def jobs_archive(folder: Path) -> Path:
    """``folder``/fairshelf-jobs.zip: the imported ``jobs`` package (its .py files and
    package data), importable from the zip as ``jobs`` (``--py-files`` / ``addPyFile``)."""
    package = Path(jobs.__file__).resolve().parent
    archive = folder / "fairshelf-jobs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zipped.write(path, Path("jobs") / path.relative_to(package))
    return archive


def missing_jvm_classes(spark: SparkSession, classes: dict[str, str]) -> list[str]:
    """The names (keys of ``classes``) whose class (value) the driver's JVM cannot load."""
    jvm = spark.sparkContext._jvm
    loader = jvm.Thread.currentThread().getContextClassLoader()
    missing = []
    for name, class_name in classes.items():
        try:
            jvm.java.lang.Class.forName(class_name, False, loader)
        except Exception:  # py4j's Py4JJavaError wrapping ClassNotFoundException
            missing.append(name)
    return missing


def require_delta_jars(spark: SparkSession) -> None:
    """ConfigError, saying how to provide them, unless the Delta Lake jars are loaded."""
    missing = missing_jvm_classes(spark, DELTA_JARS)
    if missing:
        raise ConfigError(
            f'table_engine "delta-spark" needs the Delta Lake jars on Spark\'s classpath, and '
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing. Provide them "
            "with spark.jars.packages=io.delta:delta-spark_2.13:4.4.1 (downloaded from a reachable "
            "Maven repository; spark.jars.repositories names a mirror), with --jars or spark.jars "
            "naming the jar files (delta-spark_2.13-4.4.1.jar, delta-storage-4.4.1.jar), in "
            "spark-defaults.conf or on spark-submit's command line, or run on a platform that ships "
            'them (Databricks, EMR). Or use table_engine = "delta-rs" (the default; no jars needed).'
        )
