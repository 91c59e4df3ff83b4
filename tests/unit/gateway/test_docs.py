"""docs/gateway.md's settings table is the settings class's, so the two cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import GatewaySettings
from loraloop.cli.config import render_default

DOC = Path(__file__).resolve().parents[3] / "docs" / "gateway.md"
ROW = re.compile(r"^\| `(LORALOOP_GATEWAY__[A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)


def test_every_setting_is_documented_with_its_default() -> None:
    documented = dict(ROW.findall(DOC.read_text(encoding="utf-8")))
    expected = {
        f"LORALOOP_GATEWAY__{name.upper()}": render_default(
            info.get_default(call_default_factory=True, validated_data={})
        )
        for name, info in GatewaySettings.model_fields.items()
    }
    assert {k: v.strip() for k, v in documented.items()} == expected
