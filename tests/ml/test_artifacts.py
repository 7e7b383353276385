import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.errors import ModelError
from streamer.ml.artifacts import check_versions, load_model, verify
from streamer.ml.scorer import Scorer


def _one_line(err: ModelError) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_a_good_directory_loads(model_copy):
    meta, objs = load_model(model_copy)
    assert meta["model_version"].startswith("m-")
    assert set(objs) == {"vectorizer.joblib", "level_model.joblib", "anomaly_model.joblib"}


def test_loading_the_shipped_model_does_not_import_scikit_learn():
    # scikit-learn's import is most of a cold start; the shipped models hold plain numpy weights.
    models = Path(__file__).resolve().parents[2] / "models"
    code = ("import sys; from streamer.ml.scorer import Scorer; s = Scorer.load(sys.argv[1]); "
            "s.score(['disk full on /dev/sda1'], [None]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn' or m == 'scipy.optimize'))")
    out = subprocess.run([sys.executable, "-c", code, str(models)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tampered_artifact_is_refused_before_unpickling(model_copy):
    p = model_copy / "level_model.joblib"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        Scorer.load(model_copy)
    assert "level_model.joblib" in _one_line(e.value) and "sha256" in str(e.value)


def test_truncated_artifact(model_copy):
    p = model_copy / "vectorizer.joblib"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "vectorizer.joblib" in _one_line(e.value) and "truncated" in str(e.value)


def test_missing_artifact(model_copy):
    (model_copy / "anomaly_model.joblib").unlink()
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "anomaly_model.joblib" in _one_line(e.value) and "missing" in str(e.value)


def test_missing_and_broken_metadata(model_copy, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        verify(tmp_path / "nowhere")
    (model_copy / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="metadata.json.*JSON"):
        verify(model_copy)
    (model_copy / "metadata.json").unlink()
    with pytest.raises(ModelError, match="metadata.json: missing"):
        verify(model_copy)


def test_unlisted_file_is_refused(model_copy):
    (model_copy / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "extra.pkl" in _one_line(e.value) and "not listed" in str(e.value)
    (model_copy / "extra.pkl").unlink()
    (model_copy / "README.md").write_text("notes are fine")
    verify(model_copy)


def test_hash_swapped_in_metadata_is_still_caught_by_size_or_hash(model_copy):
    meta = json.loads((model_copy / "metadata.json").read_text())
    from streamer.ml.artifacts import seal

    meta["artifacts"]["vectorizer.joblib"]["sha256"] = "0" * 64
    (model_copy / "metadata.json").write_text(json.dumps(seal(meta)))  # even with a recomputed digest
    with pytest.raises(ModelError, match="model_version|vectorizer.joblib: sha256"):
        verify(model_copy)


@pytest.mark.parametrize("lib,value,ok", [
    ("sklearn", "same-patch-differs", True), ("sklearn", "other-minor", False),
    ("numpy", "other-minor", True), ("numpy", "other-major", False),
    ("python", "older-minor", True), ("python", "newer-minor", False),
])
def test_version_policy(model_copy, lib, value, ok):
    meta = json.loads((model_copy / "metadata.json").read_text())
    cur = dict(meta["library_versions"])
    major, minor = (int(x) for x in cur[lib].split(".")[:2])
    want = {"same-patch-differs": f"{major}.{minor}.999", "other-minor": f"{major}.{minor + 1}.0",
            "other-major": f"{major + 1}.0.0", "older-minor": f"{major}.{max(minor - 1, 0)}.0",
            "newer-minor": f"{major}.{minor + 1}.0"}[value]
    meta["library_versions"] = {**cur, lib: want}
    if ok:
        check_versions(meta, model_copy / "metadata.json", current=cur)
    else:
        with pytest.raises(ModelError, match=lib if lib != "sklearn" else "scikit-learn"):
            check_versions(meta, model_copy / "metadata.json", current=cur)


@pytest.mark.parametrize("command", [["status"], ["score"], ["evaluate", "--data", os.devnull]])
def test_cli_refuses_a_bad_model_with_one_line_and_nonzero_exit(model_copy, command, capsys, monkeypatch):
    p = model_copy / "anomaly_model.joblib"
    p.write_bytes(p.read_bytes() + b"x")
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    rc = main([*command, "--models", str(model_copy)])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.count("\n") == 1 and "anomaly_model.joblib" in err and "Traceback" not in err


def _write_meta(d, meta):
    (d / "metadata.json").write_text(json.dumps(meta, indent=2))


def test_metadata_only_edit_is_refused(model_copy):
    # the tester's attack: threshold 0.07 -> 1.0 and a forged version, artifacts untouched
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["anomaly_threshold"] = 1.0
    _write_meta(model_copy, meta)
    with pytest.raises(ModelError, match="TAMPERED: content digest") as err:
        load_model(model_copy)
    _one_line(err.value)


def test_forged_version_is_refused_even_with_a_recomputed_digest(model_copy):
    from streamer.ml.artifacts import seal

    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["model_version"] = "m-000000000000"
    _write_meta(model_copy, seal(meta))
    with pytest.raises(ModelError, match="model_version"):
        verify(model_copy)


def test_malicious_pickle_with_updated_sha256_never_runs_when_signed(model_copy, tmp_path, monkeypatch):
    import hashlib
    import pickle

    from streamer.ml.artifacts import seal

    monkeypatch.setenv("STREAMER_MODEL_KEY", "secret")
    meta = json.loads((model_copy / "metadata.json").read_text())
    _write_meta(model_copy, seal(meta, b"secret"))
    verify(model_copy)  # the signed copy is good
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = model_copy / "level_model.joblib"
    p.write_bytes(pickle.dumps(Payload()))
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["artifacts"]["level_model.joblib"] = {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                               "bytes": p.stat().st_size}
    _write_meta(model_copy, meta)  # the attacker updates sha256 but cannot re-sign
    with pytest.raises(ModelError) as err:
        load_model(model_copy)
    _one_line(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("signed_with, key, ok", [(None, None, True), (b"k1", b"k1", True),
                                                   (None, b"k1", False), (b"k2", b"k1", False)])
def test_signature_policy(model_copy, monkeypatch, signed_with, key, ok):
    from streamer.ml.artifacts import seal

    meta = json.loads((model_copy / "metadata.json").read_text())
    _write_meta(model_copy, seal(meta, signed_with))
    if key:
        monkeypatch.setenv("STREAMER_MODEL_KEY", key.decode())
    else:
        monkeypatch.delenv("STREAMER_MODEL_KEY", raising=False)
    monkeypatch.delenv("STREAMER_MODEL_KEY_FILE", raising=False)
    if ok:
        verify(model_copy)
    else:
        with pytest.raises(ModelError, match="unsigned|signature"):
            verify(model_copy)
