import json

import pytest

from streamer.errors import StreamerError
from streamer.ml.data import read_dataset


def test_jsonl_with_ecs_keys_and_corpus_labels(tmp_path):
    p = tmp_path / "a.jsonl"
    rows = [
        {"message": "m1", "log.level": "warning", "@timestamp": "2024-01-01T00:00:01Z"},
        {"message": "m2", "labels": {"level": "ERROR", "is_anomaly": True}, "@timestamp": "2024-01-01T00:00:02Z"},
        {"message": "m3", "log": {"level": "I"}, "@timestamp": "2024-01-01T00:00:03Z"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = read_dataset(p)
    assert ds.messages == ["m1", "m2", "m3"]
    assert ds.levels == ["warning", "ERROR", "I"]
    assert ds.timestamps is not None and ds.is_anomaly is None  # only one row has a label


def test_csv_loghub_style(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("LineId,Label,Level,Content\n1,-,INFO,ok\n2,KERNDTLB,FATAL,boom\n")
    ds = read_dataset(p)
    assert ds.messages == ["ok", "boom"] and ds.levels == ["INFO", "FATAL"]
    assert ds.is_anomaly == [False, True]


@pytest.mark.parametrize(
    "content,match",
    [
        ("{broken\n", "not valid JSON"),
        ("[1]\n", "JSON object"),
        ('{"level": "INFO"}\n', "no message"),
        ("", "no rows"),
    ],
)
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "c.jsonl"
    p.write_text(content)
    with pytest.raises(StreamerError, match=match):
        read_dataset(p)
