"""Topic creation settings: partitions, replication, retention, compaction."""

from __future__ import annotations

from loraloop.events import DLQ_TOPIC
from loraloop.settings import StreamSettings
from streams.topics import all_topics, new_topics, topic_configs


def test_source_topics_keep_the_configured_retention() -> None:
    stream = StreamSettings(retention_ms=3_600_000)
    assert topic_configs(stream, "llm.turns") == {
        "cleanup.policy": "delete",
        "retention.ms": "3600000",
    }


def test_users_are_compacted_and_dead_letters_kept_longer() -> None:
    stream = StreamSettings()
    assert topic_configs(stream, "llm.users") == {"cleanup.policy": "compact"}
    assert topic_configs(stream, DLQ_TOPIC)["retention.ms"] == str(stream.dlq_retention_ms)
    assert stream.dlq_retention_ms > stream.retention_ms


def test_every_topic_gets_partitions_replication_and_min_insync_replicas() -> None:
    stream = StreamSettings(
        partitions=24, replication_factor=3, min_insync_replicas=2, topic_prefix="prod."
    )
    topics = new_topics(stream)
    assert [t.name for t in topics] == [f"prod.{base}" for base in all_topics()]
    for topic in topics:
        assert (topic.num_partitions, topic.replication_factor) == (24, 3)
        assert topic.topic_configs["min.insync.replicas"] == "2"
