"""The one place a SparkSession is built. Stages receive it; they never create one."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from jobs.core.config import Config


def build_spark(config: Config, app_name: str = "fairshelf") -> SparkSession:
    """A SparkSession for ``config``: local by default, any master the config names.

    The Delta data source of ``jobs.lake.tables`` is registered on the session, so the
    default table engine needs no JVM jars.
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
