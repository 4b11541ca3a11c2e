"""The one place a SparkSession is built. Stages receive it; they never create one."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.core.config import Config

# Spark's JVM logging at ERROR (package data): for commands a person watches.
QUIET_LOG4J2 = Path(str(resources.files("jobs.lake").joinpath("log4j2-quiet.properties")))


def quiet_java_options(properties: Path = QUIET_LOG4J2) -> str:
    """The driver's JVM option that makes it log with ``properties`` (log4j2)."""
    return f"-Dlog4j2.configurationFile={properties.resolve().as_uri()}"


def build_spark(config: Config, app_name: str = "fairshelf", *, quiet: bool = False) -> SparkSession:
    """A SparkSession for ``config``: local by default, any master the config names.

    The Delta data source of ``jobs.lake.tables`` is registered on the session, so the
    default table engine needs no JVM jars. ``quiet`` (the CLI without -v) starts the
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
    builder = (
        SparkSession.builder.appName(app_name)
        .master(config.spark.master)
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
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
    spark.sparkContext.setLogLevel("ERROR")
    from jobs.lake.tables import register_data_source

    register_data_source(spark)
    return spark
