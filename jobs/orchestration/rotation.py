"""``fairshelf rotate-key``: move a lakehouse to a new pseudonymization key, every user key
at once (DESIGN.md, "Privacy rules"; ``jobs.lake.pseudonym_space``).

A user key is HMAC-SHA256(key, account id), so a new key needs the account ids. fairshelf
never stores them outside ``landing/``; the rotation takes them from the landing zone:
the profiles (``landing/users``), the viewing events of every day and the erasure
requests (``landing/erasure_requests``). That is why erasure requests are retained there,
``fairshelf erase`` included (it writes its request there too): the erasure log holds only
pseudonyms, and without the account id an erased viewer's pseudonym could not be carried
into the new space, so their landing data would pass the new space's erasure filter.

One rotation:
1. checks: the current key is the lakehouse's, the new key is another one, and every user
   key of every table, of the erasure log and of every saved model has an account id in
   landing (else nothing is written: the message names the tables and how many keys);
2. records ``_fairshelf/rotation.json`` (``jobs.lake.pseudonym_space``) (from, to, the tables done so far): while it is
   there every other command refuses to read or write user keys;
3. rewrites each table with a user key in one commit (old key -> new key; keys already in
   the new space stay: that is how an interrupted rotation resumes), then purges its
   history, so no older version holds a pseudonym of the old space; re-keys the user index
   of every saved model;
4. re-points every publication whose pinned versions were purged (a ``rotation`` row in
   ``gold/runs`` per run date), records the new space and removes the rotation record.

An interrupted rotation (a crash, kill -9) is resumed by running the same command with the
same keys. Like an erasure it needs the lakehouse to itself: no run may write meanwhile.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import MIN_KEY_BYTES, Config
from jobs.core.dates import utc_now
from jobs.core.errors import KeyMismatch
from jobs.core.schemas import USER_KEY_COLUMNS
from jobs.lake import tables
from jobs.lake.landing import landing_account_ids
from jobs.lake.model_store import USERS_FILE, model_dirs, replace_file
from jobs.lake.pseudonym_space import (
    PseudonymSpace,
    RotationState,
    clear_rotation,
    read_rotation,
    read_space,
    write_rotation,
    write_space,
)
from jobs.lake.runs import append_runs_rows, repoint_publications
from jobs.shared.privacy import with_pseudonym

STAGE = "rotate_key"


class RotationError(KeyMismatch):
    """A key rotation cannot start or finish; the message says why and what to do."""


@dataclass
class RotationReport:
    run_id: str
    from_fingerprint: str
    to_fingerprint: str
    resumed: bool
    accounts: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    model_dirs: int = 0
    publications_repointed: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts and fingerprints only (printed by the CLI, kept in gold/runs)."""
        return {**asdict(self), "seconds": round(self.seconds, 1)}


def read_new_key(path: Path) -> bytes:
    """The new key from a file (never from the command line, where `ps` would show it)."""
    if not path.is_file():
        raise RotationError(f"the new key file {path} does not exist")
    if path.stat().st_mode & 0o077:
        raise RotationError(f"the new key file {path} is readable by others: `chmod 600 {path}` first")
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise RotationError(f"the new key in {path} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


# --- pure parts ------------------------------------------------------------------------------

def key_pairs(account_ids: DataFrame, old_key: bytes, new_key: bytes) -> DataFrame:
    """(old_key, new_key) for every account id: its pseudonym in both spaces."""
    keyed = with_pseudonym(with_pseudonym(account_ids, old_key, "account_id", "old_key"),
                           new_key, "account_id", "new_key")
    return keyed.select("old_key", "new_key")


def with_rekeyed_column(df: DataFrame, column: str, pairs: DataFrame) -> DataFrame:
    """``df`` with ``column`` moved to the new space (keys already there stay; null stays),
    plus a boolean ``_unknown`` for keys of neither space. Column order kept."""
    old = pairs.select(F.col("old_key").alias("_old"), F.col("new_key").alias("_new"))
    new = pairs.select(F.col("new_key").alias("_already"))
    joined = (df.join(old, df[column] == old["_old"], "left")
                .join(new, F.col(column) == new["_already"], "left"))
    rekeyed = F.coalesce(F.col("_new"), F.col(column))
    unknown = F.col(column).isNotNull() & F.col("_new").isNull() & F.col("_already").isNull()
    return joined.select(*[rekeyed.alias(c) if c == column else F.col(c) for c in df.columns],
                         unknown.alias("_unknown"))


def rekeyed_frame(df: DataFrame, pairs: DataFrame) -> DataFrame:
    """Every user key column of ``df`` moved to the new space, with ``_unknown`` set when
    any of them is a key of neither space."""
    unknown = F.lit(False)
    for column in [c for c in USER_KEY_COLUMNS if c in df.columns]:
        df = with_rekeyed_column(df, column, pairs).withColumnRenamed("_unknown", f"_unknown_{column}")
        unknown = unknown | F.col(f"_unknown_{column}")
    flags = [c for c in df.columns if c.startswith("_unknown_")]
    return df.withColumn("_unknown", unknown).drop(*flags)


# --- the procedure ------------------------------------------------------------------------------

def rotate_key(spark: SparkSession, config: Config, new_key: bytes,
               progress: Callable[[str], None] = lambda message: None) -> RotationReport:
    """Move the lakehouse of ``config`` (whose key is the current one) to ``new_key``; see
    the module doc. Resumes an interrupted rotation to the same key."""
    started = time.perf_counter()
    old_key = config.require_pseudonym_key()
    new_config = config.with_key(new_key)
    if new_key == old_key:
        raise RotationError("the new key is the current key: nothing to rotate")
    state = read_rotation(config.lakehouse)
    if state is None:
        space = read_space(config.lakehouse)
        if space is None:
            raise RotationError(f"no run has written {config.lakehouse} yet: there is no user key to "
                                "rotate; use the new key from the first run on")
        if space.fingerprint != config.key_fingerprint:
            raise RotationError(
                f"FAIRSHELF_PSEUDONYM_KEY (fingerprint {config.key_fingerprint}) is not the lakehouse's "
                f"key ({space.fingerprint}): set it to the current key and give the new one with --new-key-file")
        state = RotationState(config.key_fingerprint, new_config.key_fingerprint,
                              f"rotate__{utc_now().strftime('%Y%m%dT%H%M%SZ')}__{uuid.uuid4().hex[:4]}",
                              utc_now().isoformat())
        resumed = False
    elif (state.from_fingerprint, state.to_fingerprint) != (config.key_fingerprint, new_config.key_fingerprint):
        raise RotationError(
            f"a rotation from key {state.from_fingerprint} to {state.to_fingerprint} (started "
            f"{state.started_at}) is unfinished: run `fairshelf rotate-key` with those keys to finish it")
    else:
        resumed = True
    report = RotationReport(state.run_id, state.from_fingerprint, state.to_fingerprint, resumed)

    progress("reading the account ids of the landing zone")
    pairs = key_pairs(landing_account_ids(spark, config), old_key, new_key).cache()
    report.accounts = pairs.count()
    todo = [info for info in tables.user_key_tables(config.lakehouse) if info.name not in state.tables_done]
    frames = {info.name: rekeyed_frame(tables.read_table(spark, info.uri), pairs) for info in todo}
    models = [] if state.models_done else model_dirs(config.path("models"))
    check_every_key_maps(spark, frames, models, pairs)

    write_rotation(config.lakehouse, state)  # from here on, every other command waits for the rotation
    commit = tables.CommitInfo(state.run_id, utc_now().date().isoformat(), STAGE, config.code_version,
                               config.config_hash)
    for info in todo:
        progress(f"re-keying {info.name}")
        frame = frames[info.name].drop("_unknown")
        report.rows_by_table[info.name] = info.rows
        tables.write_table(frame, info.uri, commit=commit, mode="overwrite",
                           allowed_columns=frame.columns, stats_exclude=USER_KEY_COLUMNS,
                           engine=config.spark.table_engine)
        tables.purge_history(info.uri, commit=commit)
        state.tables_done.append(info.name)
        write_rotation(config.lakehouse, state)
    for directory in models:
        progress(f"re-keying the model {directory.name}")
        rekey_model_users(spark, directory, pairs)
        report.model_dirs += 1
    state.models_done = True
    write_rotation(config.lakehouse, state)

    # Every user-key table now has one version, the re-keyed one (an interrupted attempt's
    # tables included): publications pinned to older ones are re-pointed to it.
    versions = {info.name: info.version for info in tables.user_key_tables(config.lakehouse)}
    rows = repoint_publications(config.lakehouse, versions, kind="rotation", run_id=state.run_id,
                                message=f"key rotated from {state.from_fingerprint} to {state.to_fingerprint}",
                                now=utc_now().isoformat())
    if rows:
        rows = [{**row, "key_fingerprint": state.to_fingerprint} for row in rows]
        append_runs_rows(spark, new_config, rows, stage=STAGE)
    report.publications_repointed = len(rows)
    write_space(config.lakehouse, PseudonymSpace(state.to_fingerprint, utc_now().isoformat(), state.run_id))
    clear_rotation(config.lakehouse)
    pairs.unpersist()
    report.seconds = time.perf_counter() - started
    return report


def check_every_key_maps(spark: SparkSession, frames: dict[str, DataFrame], models: list[Path],
                         pairs: DataFrame) -> None:
    """RotationError, before anything is written, when a table or a model holds user keys
    without an account id in landing (they could not be carried into the new space)."""
    problems = []
    for name, frame in frames.items():
        unknown = frame.where("_unknown").count()
        if unknown:
            problems.append(f"{name}: {unknown} rows")
    for directory in models:
        index = spark.createDataFrame(pq.read_table(directory / USERS_FILE).select(["user_key"]).to_pandas())
        unknown = rekeyed_frame(index, pairs).where("_unknown").count()
        if unknown:
            problems.append(f"model {directory.name}: {unknown} users")
    if problems:
        raise RotationError(
            "user keys without an account id in landing (users, viewing_events, erasure_requests), "
            f"so they cannot be re-keyed: {'; '.join(problems)}. Nothing was changed. Restore the "
            "landing data they came from, or erase those rows first")


def rekey_model_users(spark: SparkSession, directory: Path, pairs: DataFrame) -> None:
    """The user index of a saved model moved to the new space (rows and order kept)."""
    index = pq.read_table(directory / USERS_FILE)
    frame = spark.createDataFrame(index.to_pandas())
    rekeyed = rekeyed_frame(frame, pairs).drop("_unknown").orderBy("row")
    table = pa.Table.from_pandas(rekeyed.toPandas(), preserve_index=False).cast(index.schema)
    replace_file(directory / USERS_FILE, lambda out: pq.write_table(table, out))

