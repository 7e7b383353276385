import json
import shutil
from pathlib import Path

from streamer.cli import main
from streamer.ml.artifacts import seal

SHIPPED = Path(__file__).resolve().parents[2] / "models"


def _status(capsys, d) -> str:
    assert main(["models", "list", "--models", str(d)]) == 0
    return capsys.readouterr().out.splitlines()[1]


def test_list_shows_unsigned_signed_and_tampered_honestly(tmp_path, capsys, monkeypatch):
    d = tmp_path / "models"
    shutil.copytree(SHIPPED, d)
    monkeypatch.delenv("STREAMER_MODEL_KEY", raising=False)
    monkeypatch.delenv("STREAMER_MODEL_KEY_FILE", raising=False)
    assert _status(capsys, d).endswith("unsigned")
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps(seal(meta, b"k")))
    monkeypatch.setenv("STREAMER_MODEL_KEY", "k")
    assert _status(capsys, d).endswith("  ok")
    meta["anomaly_threshold"] = 1.0
    (d / "metadata.json").write_text(json.dumps(seal(meta, b"k") | {"anomaly_threshold": 0.5}))
    assert "TAMPERED: content digest" in _status(capsys, d)


def test_list_refuses_a_pickled_directory_and_convert_makes_it_load(tmp_path, capsys, monkeypatch):
    from streamer.ml.scorer import Scorer
    from tests.ml.test_artifacts import legacy_dir

    monkeypatch.delenv("STREAMER_MODEL_KEY", raising=False)
    monkeypatch.delenv("STREAMER_MODEL_KEY_FILE", raising=False)
    d = legacy_dir(SHIPPED, tmp_path / "models")
    assert _status(capsys, d).endswith(
        f"{d}: pickled artifacts are not loaded (anomaly_model.joblib, "
        f"level_model.joblib, vectorizer.joblib); retrain or convert with "
        f"`streamer models convert {d}`"
    )
    old = json.loads((d / "metadata.json").read_text())["model_version"]
    assert main(["models", "convert", str(d)]) == 2  # unsigned: refused without the operator's say-so
    assert "--trust-unsigned" in capsys.readouterr().err and list(d.glob("*.joblib"))
    assert main(["models", "convert", str(d), "--trust-unsigned"]) == 0
    new = Scorer.load(d).model_version
    assert capsys.readouterr().out == f"converted {d} ({old}, pickled) -> {d} ({new}, .npz/.json, unsigned)\n"
    assert _status(capsys, d).endswith("  unsigned") and not list(d.glob("*.joblib"))
    # the weights are the shipped ones, so is the version: conversion is the same re-save that made models/
    assert new == json.loads((SHIPPED / "metadata.json").read_text())["model_version"]
