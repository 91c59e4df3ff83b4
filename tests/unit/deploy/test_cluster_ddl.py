"""Cluster mode: every migration's DDL becomes ON CLUSTER, Replicated and Distributed."""

from __future__ import annotations

import re

import pytest

from analytics import schema
from analytics.cluster_ddl import LOCAL_SUFFIX, ClusterDDL, TableDDL, created_tables
from analytics.exceptions import MigrationError, WarehouseError
from analytics.warehouse import Warehouse, cluster_ddl, migration_ddl
from loraloop.settings import Settings, WarehouseSettings

PARAMS = {"TEXT_TTL_DAYS": "30"}
CLUSTER = ClusterDDL(cluster="main", database="loraloop")


def _single_server() -> list[str]:
    return [s for m in schema.available() for s in m.statements(PARAMS)]


def _cluster() -> list[str]:
    return [s for _, statements in schema.planned(PARAMS, cluster=CLUSTER) for s in statements]


def _creates(statements: list[str]) -> dict[str, str]:
    found = {}
    for statement in statements:
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) ", statement)
        if match:
            found[match[1]] = statement
    return found


def test_every_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    tables = created_tables(_single_server())
    assert {"turns", "conversations", "samples", "sample_labels", "assignments"} <= tables
    created = _creates(_cluster())
    assert set(created) == tables | {f"{t}{LOCAL_SUFFIX}" for t in tables}
    for table in tables:
        local, dist = created[f"{table}{LOCAL_SUFFIX}"], created[table]
        assert "ON CLUSTER `main`" in local
        assert "ON CLUSTER `main`" in dist
        assert re.search(r"ENGINE = Replicated\w*MergeTree\(", local), table
        assert f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'" in local
        assert (
            f"ENGINE = Distributed('main', 'loraloop', '{table}{LOCAL_SUFFIX}', cityHash64(" in dist
        )
        assert " TTL " not in dist


def test_the_version_column_and_the_table_settings_are_kept() -> None:
    local = _creates(_cluster())["turns_local"]
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/turns', " in local
    assert "'{replica}', ingested_at)" in local
    assert "PARTITION BY toYYYYMM(ts)" in local
    assert "ORDER BY (conversation_id, event_id)" in local
    assert "TTL toDateTime(ts) + INTERVAL 30 DAY" in local
    aggregated = _creates(_cluster())["conversation_metrics_hourly_local"]
    assert "ENGINE = ReplicatedAggregatingMergeTree(" in aggregated


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("turns", "cityHash64(conversation_id)"),
        ("conversations", "cityHash64(conversation_id)"),
        ("signals", "cityHash64(conversation_id)"),
        ("samples", "cityHash64(sample_id)"),
        ("sample_transitions", "cityHash64(sample_id)"),
        ("sample_labels", "cityHash64(sample_id)"),
        ("user_profiles", "cityHash64(user_id)"),
        ("assignments", "cityHash64(user_id)"),
        ("model_versions", "cityHash64(version)"),
        ("dead_letters", "cityHash64(source_topic, partition, offset)"),
    ],
)
def test_the_sharding_key_keeps_each_dedup_key_on_one_shard(table: str, key: str) -> None:
    assert _creates(_cluster())[table].endswith(f"{key})")


def test_alters_change_the_local_and_the_distributed_table() -> None:
    alters = [s for s in _cluster() if s.startswith("ALTER TABLE samples")]
    assert alters == [
        "ALTER TABLE samples_local ON CLUSTER `main` ADD COLUMN IF NOT EXISTS sampled_by "
        "LowCardinality(String)",
        "ALTER TABLE samples ON CLUSTER `main` ADD COLUMN IF NOT EXISTS sampled_by "
        "LowCardinality(String)",
    ]


def test_views_run_on_the_cluster_and_the_incremental_view_reads_local_tables() -> None:
    statements = _cluster()
    views = [s for s in statements if "VIEW" in s.split("\n", 1)[0]]
    assert len(views) == 5  # pool is created in 0003 and replaced in 0007
    assert all("ON CLUSTER `main`" in v.split("\n", 1)[0] for v in views)
    (incremental,) = [v for v in views if "conversation_metrics_hourly_mv" in v]
    assert "TO conversation_metrics_hourly_local" in incremental
    assert "FROM conversations_local" in incremental
    (snapshot,) = [v for v in views if "REFRESH EVERY" in v]
    assert "FROM conversations FINAL" in snapshot
    (pool,) = [v for v in views if v.startswith("CREATE VIEW IF NOT EXISTS pool")]
    assert "FROM samples FINAL" in pool
    (replaced,) = [v for v in views if v.startswith("CREATE OR REPLACE VIEW pool")]
    assert "first_seen_version" in replaced


def test_backfills_run_once_through_the_distributed_tables() -> None:
    (backfill,) = [s for s in _cluster() if s.startswith("INSERT INTO")]
    assert backfill.startswith("INSERT INTO conversation_metrics_hourly\n")
    assert "FROM conversations\n" in backfill


def test_the_single_server_ddl_is_unchanged_without_a_cluster() -> None:
    plain = [s for _, statements in schema.planned(PARAMS) for s in statements]
    assert plain == _single_server()
    assert not any("ON CLUSTER" in s for s in plain)


def test_unknown_statements_and_engines_are_refused() -> None:
    with pytest.raises(MigrationError, match="no rule"):
        CLUSTER.transform_one("DROP TABLE turns", {"turns"})
    with pytest.raises(MigrationError, match="MergeTree"):
        CLUSTER.transform_one("CREATE TABLE t (a UInt8) ENGINE = Memory", set())
    with pytest.raises(MigrationError, match="not a table"):
        CLUSTER.transform_one("ALTER TABLE nope ADD COLUMN b UInt8", {"turns"})


def test_a_table_without_an_order_by_is_spread_at_random() -> None:
    table = TableDDL.parse("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY tuple()")
    assert table.sharding_key() == "rand()"


def test_render_prints_the_ledger_and_every_migration() -> None:
    settings = Settings(warehouse=WarehouseSettings(cluster="main"))
    script = migration_ddl(settings)
    assert script.startswith("-- ledger\nCREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER")
    for migration in schema.available():
        assert f"-- {migration.version:04d}_{migration.name}" in script
    assert "ON CLUSTER" not in migration_ddl(Settings())


def test_cluster_settings_and_the_embedded_engine_do_not_mix(tmp_path: object) -> None:
    assert cluster_ddl(Settings()) is None
    layout = cluster_ddl(Settings(warehouse=WarehouseSettings(cluster="main")))
    assert layout is not None
    assert layout.create_database() == "CREATE DATABASE IF NOT EXISTS `loraloop` ON CLUSTER `main`"
    with pytest.raises(WarehouseError, match="needs a ClickHouse server"):
        Warehouse.connect(dsn=f"chdb://{tmp_path}/wh", database="loraloop", cluster=layout)


def test_a_cluster_name_is_checked() -> None:
    with pytest.raises(ValueError, match="CLUSTER"):
        WarehouseSettings(cluster="main; DROP")
