"""``loraloop samples import``: a baseline file becomes baseline samples, audited as an
approver's moves, idempotently, and the trainer reads them like promoted ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from analytics import pool
from analytics.pool_log import read_state
from loraloop.baseline import BaselineConversation, BaselineLine, parse_baseline_line, read_baseline
from loraloop.cli.samples import samples_app
from loraloop.eventfile import LineError
from loraloop.lifecycle import Role, SampleStatus
from tests.unit.console.conftest import Console, cli_as
from trainer.dataset import DatasetConfig, build_dataset
from trainer.pool import read_pool
from trainer.records import Tier
from trainer.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "baseline.jsonl"
URL = ["--url", "http://testserver"]


def _line(**fields: Any) -> bytes:
    record: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": "How much is the bootcamp?"},
            {"role": "assistant", "content": "It is $1,299, or 3 payments of $449."},
        ],
        "problem_types": ["missing_knowledge"],
    }
    record.update(fields)
    return orjson.dumps({k: v for k, v in record.items() if v is not None})


def _conversation(**fields: Any) -> BaselineConversation:
    parsed = parse_baseline_line(1, _line(**fields))
    assert isinstance(parsed, BaselineLine), parsed
    return parsed.conversation


# ---------------------------------------------------------------------------- the file


def test_a_good_line_parses_with_the_defaults() -> None:
    conversation = _conversation()
    assert conversation.tier == "core_baseline"
    assert conversation.answer == "It is $1,299, or 3 payments of $449."
    assert conversation.conversation_id.startswith("import-")
    assert _conversation(id="faq-1").conversation_id == "import-faq-1"
    assert (
        _conversation().conversation_id == _conversation(tier="candidate_baseline").conversation_id
    )


def test_the_example_file_is_good() -> None:
    lines = list(read_baseline(EXAMPLE))
    assert lines
    assert all(isinstance(line, BaselineLine) for line in lines)


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b"not json", None, "not JSON"),
        (b"[1, 2]", None, "expected a JSON object"),
        (b'{"tier": "core_baseline"}', "messages", "Field required"),
        (_line(messages=[{"role": "user", "content": "hi"}]), "messages", "at least 2"),
        (
            _line(
                messages=[{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
            ),
            "messages",
            "last message must be the accepted assistant answer",
        ),
        (
            _line(
                messages=[
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            ),
            "messages",
            "must be the user turn it answers",
        ),
        (
            _line(
                messages=[{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]
            ),
            "messages.0.role",
            "'user' or 'assistant'",
        ),
        (
            _line(
                messages=[{"role": "user", "content": "  "}, {"role": "assistant", "content": "b"}]
            ),
            "messages.0.content",
            "blank",
        ),
        (_line(tier="problem"), "tier", "core_baseline"),
        (_line(problem_types=["not a type!"]), "problem_types.0", "pattern"),
        (_line(id=""), "id", "at least 1"),
        (_line(colour="blue"), "colour", "Extra inputs"),
    ],
)
def test_a_bad_line_names_its_number_and_field(raw: bytes, field: str | None, says: str) -> None:
    parsed = parse_baseline_line(7, raw)
    assert isinstance(parsed, LineError)
    assert parsed.field == field
    assert str(parsed).startswith("line 7: ")
    assert says in parsed.message


def test_a_byte_order_mark_and_blank_lines_cost_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _line() + b"\n\n" + b"oops\n")
    parsed = list(read_baseline(path))
    assert isinstance(parsed[0], BaselineLine)
    assert isinstance(parsed[1], LineError)
    assert parsed[1].line_no == 3


# ---------------------------------------------------------------------------- the API


def _body(*conversations: BaselineConversation, **flags: Any) -> dict[str, Any]:
    return {
        "source": "baseline.jsonl",
        "conversations": [c.model_dump(mode="json") for c in conversations],
        **flags,
    }


def _example() -> list[BaselineConversation]:
    return [line.conversation for line in read_baseline(EXAMPLE) if isinstance(line, BaselineLine)]


def test_an_approver_imports_audited_and_idempotent(console: Console, tmp_path: Path) -> None:
    conversations = _example()
    first = console.client.post(
        "/api/samples/import", json=_body(*conversations), headers=console.bearer("ari")
    )
    assert first.status_code == 200, first.text
    imported = first.json()["imported"]
    assert len(imported) == len(conversations)
    assert not first.json()["already"]

    sample_id = "smp-import-faq-job-guarantee"
    detail = console.client.get(f"/api/samples/{sample_id}", headers=console.bearer("ari")).json()
    assert detail["summary"]["status"] == "secondary_baseline"
    trail = [(t["from_status"], t["to_status"], t["action"]) for t in detail["transitions"]]
    assert trail == [
        ("", "captured", "capture"),
        ("captured", "problem", "label"),
        ("problem", "candidate_baseline", "promote"),
        ("candidate_baseline", "secondary_baseline", "promote"),
    ]
    for row in detail["transitions"]:
        assert (row["actor"], row["role"], row["actor_kind"]) == ("ari", "approver", "human")
        assert row["reason"] == "imported baseline (baseline.jsonl)"
        assert row["evidence"]["imported_from"] == "baseline.jsonl"
    assert detail["label"]["corrected_response"] == conversations[3].answer
    assert detail["label"]["labelled_by"] == "ari"
    assert detail["label"]["problem_types"] == ["over_promise"]
    assert detail["transitions"][-1]["evidence"]["transcript_sha256"] == detail["transcript_sha256"]
    assert [t["text"] for t in detail["transcript"]] == [
        m.content for m in conversations[3].messages
    ]

    again = console.client.post(
        "/api/samples/import", json=_body(*conversations), headers=console.bearer("ari")
    )
    assert again.status_code == 200, again.text
    assert again.json()["imported"] == []
    assert sorted(again.json()["already"]) == sorted(imported)
    trail_after = console.client.get(f"/api/samples/{sample_id}", headers=console.bearer("ari"))
    assert len(trail_after.json()["transitions"]) == len(trail)
    state = read_state(console.warehouse, sample_id)
    assert state is not None
    assert state.status is SampleStatus.SECONDARY_BASELINE

    read = read_pool(
        console.warehouse, registry=Registry(tmp_path / "registry"), include_simulated=False
    )
    by_id = {s.sample_id: s for s in read.samples}
    assert set(imported) <= set(by_id), read.skipped
    for conversation in conversations:
        sample = by_id["smp-" + conversation.conversation_id]
        assert sample.status is Tier(conversation.tier)
        assert [(m.role, m.content) for m in sample.messages] == [
            (m.role, m.content) for m in conversation.messages[:-1]
        ]
        assert sample.corrected_response == conversation.answer
    rows = {r["sample_id"]: r for r in build_dataset(read.samples, config=DatasetConfig()).rows}
    row = rows["smp-import-faq-ready-to-enroll"]
    assert row["tier"] == "core_baseline"
    assert row["messages"][-1] == {"role": "assistant", "content": conversations[4].answer}
    assert len(row["messages"]) == len(conversations[4].messages)


def test_a_labeller_may_not_import(console: Console) -> None:
    response = console.client.post(
        "/api/samples/import", json=_body(_conversation()), headers=console.bearer("lena")
    )
    assert response.status_code == 403, response.text
    with pytest.raises(pool.ActionForbidden, match="approver"):
        pool.import_baseline(
            console.warehouse, [_conversation()], actor="lena", roles=[Role.LABELLER],
            taxonomy=["missing_knowledge"], source="b.jsonl",
        )  # fmt: skip


def test_refusals_write_nothing_unless_skipped(console: Console) -> None:
    good = _conversation(id="good")
    unknown = _conversation(id="odd", problem_types=["no_such_type"])
    untyped = _conversation(id="untyped", problem_types=[])
    refused = console.client.post(
        "/api/samples/import", json=_body(good, unknown, untyped), headers=console.bearer("ari")
    )
    assert refused.status_code == 422, refused.text
    assert "no_such_type" in refused.text
    assert "problem_types: missing" in refused.text
    assert read_state(console.warehouse, "smp-import-good") is None

    checked = console.client.post(
        "/api/samples/import",
        json=_body(good, unknown, dry_run=True, skip_bad=True),
        headers=console.bearer("ari"),
    ).json()
    assert checked["imported"] == ["smp-import-good"]
    assert checked["refused"][0]["index"] == 1
    assert read_state(console.warehouse, "smp-import-good") is None

    skipped = console.client.post(
        "/api/samples/import",
        json=_body(good, unknown, skip_bad=True),
        headers=console.bearer("ari"),
    ).json()
    assert skipped["imported"] == ["smp-import-good"]
    assert read_state(console.warehouse, "smp-import-good") is not None

    other = _conversation(
        id="good",
        messages=[
            {"role": "user", "content": "Another question"},
            {"role": "assistant", "content": "Another answer"},
        ],
    )
    clash = console.client.post(
        "/api/samples/import", json=_body(other, skip_bad=True), headers=console.bearer("ari")
    ).json()
    assert clash["refused"]
    assert "imported before with other messages" in clash["refused"][0]["detail"]


def test_a_batch_over_the_limit_is_refused(console: Console) -> None:
    response = console.client.post(
        "/api/samples/import", json=_body(*[_conversation()] * 501), headers=console.bearer("ari")
    )
    assert response.status_code in (413, 422), response.text


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(console: Console, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return cli_as(console, monkeypatch, "ari")


def test_cli_imports_then_finds_it_all_there(cli: CliRunner, console: Console) -> None:
    first = cli.invoke(samples_app, ["import", str(EXAMPLE), "--batch-size", "4", *URL])
    assert first.exit_code == 0, first.output
    assert "imported 6, already there 0, refused 0" in first.output
    again = cli.invoke(samples_app, ["import", str(EXAMPLE), *URL])
    assert again.exit_code == 0, again.output
    assert "imported 0, already there 6, refused 0" in again.output


def test_cli_bad_line_imports_nothing_unless_skip_bad(
    cli: CliRunner, console: Console, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join([_line(id="a"), b'{"messages": []}', _line(id="b", problem_types=None)])
    )
    refused = cli.invoke(samples_app, ["import", str(path), *URL])
    assert refused.exit_code == 1
    assert "line 2: messages" in refused.output
    assert "nothing imported" in refused.output
    assert read_state(console.warehouse, "smp-import-a") is None

    typed = cli.invoke(
        samples_app,
        ["import", str(path), "--skip-bad", "--tier", "candidate_baseline",
         "--problem-type", "over_promise", *URL],
    )  # fmt: skip
    assert typed.exit_code == 0, typed.output
    assert "imported 2, already there 0, refused 1" in typed.output
    assert "line 2" in typed.output
    b = console.client.get("/api/samples/smp-import-b", headers=console.bearer("ari")).json()
    assert b["summary"]["status"] == "candidate_baseline"
    assert b["label"]["problem_types"] == ["over_promise"]


def test_cli_refusal_by_the_console_imports_nothing(
    cli: CliRunner, console: Console, tmp_path: Path
) -> None:
    path = tmp_path / "untyped.jsonl"
    path.write_bytes(b"\n".join([_line(id="a"), _line(id="c", problem_types=None)]))
    result = cli.invoke(samples_app, ["import", str(path), *URL])
    assert result.exit_code == 1
    assert "line 2: problem_types: missing" in result.output
    assert read_state(console.warehouse, "smp-import-a") is None


def test_cli_labeller_key_is_403(cli: CliRunner, console: Console) -> None:
    result = cli.invoke(samples_app, ["import", str(EXAMPLE), "--key", console.keys["lena"], *URL])
    assert result.exit_code == 1
    assert "403" in result.output
