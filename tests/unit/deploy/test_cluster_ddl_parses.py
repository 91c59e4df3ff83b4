"""Every cluster-mode statement parses with ClickHouse's own parser (``formatQuery``).

A cluster (Keeper, remote_servers, macros) cannot run in a unit test, but the real
parser can check the generated DDL: chdb runs ClickHouse's ``formatQuery`` in a
subprocess of its own (chdb holds one engine per process).
"""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = r"""
import json, sys
import chdb
from analytics import schema
from analytics.cluster_ddl import ClusterDDL

cluster = ClusterDDL(cluster="main", database="loraloop")
statements = [cluster.ledger(), cluster.create_database()] + [
    s for _, group in schema.planned({"TEXT_TTL_DAYS": "30"}, cluster=cluster) for s in group
]
statements.append("CREATE TABLE broken ON CLUSTER (a UInt8) ENGINE = ORDER")
failed = []
for statement in statements:
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    try:
        chdb.query("SELECT formatQuery(" + literal + ")", "CSV")
    except Exception as e:
        failed.append([statement[:120], str(e)[:300]])
print(json.dumps({"count": len(statements), "failed": failed}))
"""


def test_every_generated_statement_parses_in_clickhouse() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["count"] > 40
    # Only the deliberately broken statement fails, which proves the check can fail.
    assert [f[0] for f in report["failed"]] == [
        "CREATE TABLE broken ON CLUSTER (a UInt8) ENGINE = ORDER"
    ]
