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
