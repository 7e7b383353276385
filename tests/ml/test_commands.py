"""The ML commands end to end, in-process (no Kafka/PostgreSQL needed except where status reports them)."""

import io
import json

import pytest

from streamer.cli import main
from streamer.ml.corpus import generate


def _run(argv, capsys, stdin_text=None, monkeypatch=None):
    if stdin_text is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin_text))
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


class _Stdout(io.StringIO):
    """sys.stdout stand-in with a .buffer, as `streamer score` writes bytes."""

    def __init__(self):
        super().__init__()
        self.buffer = io.BytesIO()


def test_score_round_trip_text_and_json(small_model_dir, monkeypatch):
    events = generate(30, seed=31)
    lines = [json.dumps({k: v for k, v in e.items() if k != "labels"}) for e in events[:20]]
    lines += [e["message"].replace("\n", " ") for e in events[20:]] + ["", "{not json at all"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    out = _Stdout()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["score", "--models", str(small_model_dir)]) == 0
    rows = [json.loads(x) for x in out.buffer.getvalue().decode().splitlines()]
    assert len(rows) == 30  # blank line skipped; malformed JSON is a dead letter (on stderr), as in `run`
    for row, e in zip(rows[:20], events[:20]):
        assert row["message"] == e["message"] and row["host.name"] == e["host.name"]
    assert rows[25]["message"] == events[25]["message"].replace("\n", " ")
    for row in rows:
        assert {
            "predicted_level",
            "level_confidence",
            "is_anomaly",
            "anomaly_score",
            "severity",
            "model_version",
        } <= row["streamer"].keys()


def test_score_files_and_threshold_flag(small_model_dir, tmp_path, monkeypatch):
    f = tmp_path / "in.log"
    # corpus text the model knows: unfamiliar text is never flagged, whatever the threshold
    f.write_text("".join(e["message"] + "\n" for e in generate(2, seed=44)))
    out = _Stdout()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["score", "--models", str(small_model_dir), "--anomaly-threshold", "0", str(f)]) == 0
    rows = [json.loads(x) for x in out.buffer.getvalue().decode().splitlines()]
    assert [r["streamer"]["is_anomaly"] for r in rows] == [True, True]


def test_score_missing_file_is_one_line(small_model_dir, capsys):
    rc, _, err = _run(["score", "--models", str(small_model_dir), "/nonexistent/x.log"], capsys)
    assert rc != 0 and err.count("\n") == 1 and "x.log" in err


def test_evaluate_prints_metrics(small_model_dir, tmp_path, capsys):
    p = tmp_path / "eval.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in generate(500, seed=32)) + "\n")
    rc, out, _ = _run(["evaluate", "--models", str(small_model_dir), "--data", str(p), "--json"], capsys)
    assert rc == 0
    m = json.loads(out)["metrics"]
    assert m["level"]["samples"] == 500 and 0 <= m["level"]["macro_f1"] <= 1
    assert m["anomaly"]["samples"] == 500


@pytest.mark.slow
def test_status_is_stable_and_survives_unreachable_services(small_model_dir, capsys):
    argv = [
        "status",
        "--models",
        str(small_model_dir),
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--database-url",
        "postgresql://u:secret@127.0.0.1:1/db",
    ]
    rc1, out1, _ = _run(argv, capsys)
    rc2, out2, _ = _run(argv, capsys)
    assert rc1 == rc2 == 0
    meta = json.loads((small_model_dir / "metadata.json").read_text())
    model1 = [ln for ln in out1.splitlines() if ln.startswith("  ")]
    assert model1 == [ln for ln in out2.splitlines() if ln.startswith("  ")]
    assert meta["model_version"] in out1
    assert f"macro-F1 {meta['metrics']['level']['macro_f1']:.4f}" in out1
    assert "unreachable" in out1 and "secret" not in out1


def test_status_without_a_model_fails(tmp_path, capsys):
    rc, _, err = _run(
        [
            "status",
            "--models",
            str(tmp_path / "none"),
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--database-url",
            "postgresql://u@127.0.0.1:1/db",
        ],
        capsys,
    )
    assert rc != 0 and "not found" in err


def test_train_with_data_file(tmp_path, capsys):
    import csv

    p = tmp_path / "train.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["message", "level", "timestamp"])
        for e in generate(800, seed=33):
            w.writerow([e["message"], e["labels"]["level"], e["@timestamp"]])
    out_dir = tmp_path / "m"
    rc, out, _ = _run(["train", "--data", str(p), "--out", str(out_dir)], capsys)
    assert rc == 0 and "wrote" in out
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["anomaly_model"]["supervised"] is False and meta["metrics"]["anomaly"] is None
    assert meta["num_training_samples"] == 800


def test_score_uses_the_run_decoder_and_keeps_the_input_severity(small_model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO('{"msg": "disk full", "severity": "error"}\n[1]\n'))
    out = _Stdout()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["score", "--models", str(small_model_dir)]) == 0
    (row,) = [json.loads(x) for x in out.buffer.getvalue().decode().splitlines()]
    assert row["msg"] == "disk full" and row["severity"] == "error"  # the input's own field, not the scores'
    assert row["streamer"]["source"]["offset"] == 0 and "anomaly_score" in row["streamer"]
    dead = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["dead_letter"]
    assert dead["error_class"] == "not_an_object" and dead["line"] == 2
