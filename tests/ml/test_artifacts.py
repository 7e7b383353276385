import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from streamer.cli import main
from streamer.errors import ModelError
from streamer.ml.artifacts import (
    ARTIFACTS,
    LEGACY_ARTIFACTS,
    PARTS,
    check_versions,
    convert,
    load_model,
    resave,
    save_model,
    seal,
    verify,
)
from streamer.ml.scorer import Scorer

PROBE = [
    "disk full on /dev/sda1",
    "user alice logged in from 10.0.0.1",
    "GET /api/v1/items 200 in 12 ms",
    "kernel panic: unable to mount root fs",
    "connection refused to db-1:5432, retrying in 5 s",
    "zzz qqq",
]


def _one_line(err: ModelError) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def _write_meta(d, meta):
    (d / "metadata.json").write_text(json.dumps(meta, indent=2))


def _reseal_file(d, name):
    """What an attacker who can write the directory does after replacing a file: record its sha256 and size,
    derive the model_version, recompute the (unkeyed) digest. Only a signature stops this."""
    meta = json.loads((d / "metadata.json").read_text())
    p = d / name
    meta["artifacts"][name] = {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
    names = LEGACY_ARTIFACTS if name in LEGACY_ARTIFACTS else ARTIFACTS
    meta["model_version"] = (
        "m-" + hashlib.sha256("".join(meta["artifacts"][n]["sha256"] for n in names).encode()).hexdigest()[:12]
    )
    _write_meta(d, seal(meta))


class Payload:
    """Unpickling this creates `path`: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _same_scores(a, b):
    assert a.predicted_level == b.predicted_level
    for field in ("level_confidence", "anomaly_score", "is_anomaly", "severity"):
        assert np.array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field))), field


def test_a_good_directory_loads(model_copy):
    meta, objs = load_model(model_copy)
    assert meta["model_version"].startswith("m-") and meta["schema"] == 2
    assert set(objs) == set(PARTS) == {"vectorizer", "level_model", "anomaly_model"}
    assert sorted(p.name for p in model_copy.iterdir()) == sorted([*ARTIFACTS, "metadata.json"])


def test_loading_the_shipped_model_does_not_import_scikit_learn():
    # scikit-learn's import is most of a cold start; the shipped models hold plain numpy weights.
    models = Path(__file__).resolve().parents[2] / "models"
    code = (
        "import sys; from streamer.ml.scorer import Scorer; s = Scorer.load(sys.argv[1]); "
        "s.score(['disk full on /dev/sda1'], [None]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'joblib') "
        "or m == 'scipy.optimize'))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(models)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("unsupervised", [False, True])
def test_save_then_load_gives_identical_predictions_and_bytes(tmp_path, unsupervised):
    from streamer.ml.features import LogVectorizer
    from streamer.ml.models import ConstantLevel, RarityAnomaly
    from streamer.ml.train import train_corpus

    if unsupervised:  # the other classes: one level only, no anomaly labels
        from streamer.ml.corpus import generate

        msgs = [e["message"] for e in generate(800, seed=8)]
        vec = LogVectorizer().fit(msgs)
        model = SimpleNamespace(
            vectorizer=vec,
            level_model=ConstantLevel("INFO").fit(),
            anomaly_model=RarityAnomaly().fit(vec.transform(msgs)),
            metadata={"levels": ["INFO"]},
            anomaly_threshold=0.5,
        )
    else:
        model = train_corpus(1500, seed=4)
    meta = save_model(model, tmp_path / "a")
    in_memory = Scorer(model.vectorizer, model.level_model, model.anomaly_model, meta)
    loaded = Scorer.load(tmp_path / "a")
    assert [type(o) for o in (loaded._vectorizer, loaded._level_model, loaded._anomaly_model)] == [
        type(o) for o in (model.vectorizer, model.level_model, model.anomaly_model)
    ]
    _same_scores(in_memory.score(PROBE), loaded.score(PROBE))
    # the same weights written again: the same bytes, so the same model_version
    again = resave(meta, load_model(tmp_path / "a")[1], tmp_path / "b", trained_at=meta["trained_at"])
    assert again["model_version"] == meta["model_version"]
    for name in ARTIFACTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_every_model_class_can_be_saved_without_pickle():
    # the loader rebuilds parts only through from_state(); a class without it could be trained but not shipped
    import inspect

    from streamer.ml import features, models

    parts = [
        c
        for module in (features, models)
        for _, c in inspect.getmembers(module, inspect.isclass)
        if c.__module__ == module.__name__ and any(hasattr(c, m) for m in ("transform", "predict", "score_samples"))
    ]
    assert {"LogVectorizer", "LevelModel", "SupervisedAnomaly"} <= {c.__name__ for c in parts}
    missing = [
        c.__name__
        for c in parts
        if not callable(getattr(c, "to_state", None))
        or not isinstance(inspect.getattr_static(c, "from_state", None), classmethod)
    ]
    assert not missing, f"no to_state()/from_state(): {missing}"


def test_tampered_artifact_is_refused_before_reading(model_copy):
    p = model_copy / "level_model.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        Scorer.load(model_copy)
    assert "level_model.npz" in _one_line(e.value) and "sha256" in str(e.value)


def test_truncated_artifact(model_copy):
    p = model_copy / "vectorizer.npz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "vectorizer.npz" in _one_line(e.value) and "truncated" in str(e.value)


def test_missing_artifact(model_copy):
    (model_copy / "anomaly_model.json").unlink()
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "anomaly_model.json" in _one_line(e.value) and "missing" in str(e.value)


def test_missing_and_broken_metadata(model_copy, tmp_path):
    with pytest.raises(ModelError, match=r"not found"):
        verify(tmp_path / "nowhere")
    (model_copy / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"metadata.json.*JSON"):
        verify(model_copy)
    (model_copy / "metadata.json").unlink()
    with pytest.raises(ModelError, match=r"metadata.json: missing"):
        verify(model_copy)


def test_unlisted_file_is_refused(model_copy):
    (model_copy / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(ModelError) as e:
        verify(model_copy)
    assert "extra.bin" in _one_line(e.value) and "not listed" in str(e.value)
    (model_copy / "extra.bin").unlink()
    (model_copy / "README.md").write_text("notes are fine")
    verify(model_copy)


def test_hash_swapped_in_metadata_is_still_caught_by_size_or_hash(model_copy):
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["artifacts"]["vectorizer.npz"]["sha256"] = "0" * 64
    _write_meta(model_copy, seal(meta))  # even with a recomputed digest
    with pytest.raises(ModelError, match=r"model_version|vectorizer.npz: sha256"):
        verify(model_copy)


# --- nothing in a model directory runs code on load, even when its hashes and digest were updated --------


@pytest.mark.parametrize("where", ["extra.pkl", "level_model.joblib", "models.pickle"])
def test_a_directory_with_a_pickle_is_refused_with_one_line(model_copy, tmp_path, where):
    marker = tmp_path / "pwned"
    (model_copy / where).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError) as err:
        Scorer.load(model_copy)
    assert _one_line(err.value) == (
        f"{model_copy}: pickled artifacts are not loaded ({where}); retrain or convert "
        f"with `streamer models convert {model_copy}`"
    )
    assert not marker.exists()


def test_a_pickle_in_place_of_an_npz_never_runs(model_copy, tmp_path):
    # The issue's attack: a malicious pickle with its sha256 recorded (and, unsigned, the digest recomputed).
    marker = tmp_path / "pwned"
    (model_copy / "level_model.npz").write_bytes(pickle.dumps(Payload(marker)))
    _reseal_file(model_copy, "level_model.npz")
    verify(model_copy)  # every hash and the digest are consistent: only the format can stop it now
    with pytest.raises(ModelError, match=r"level_model.npz: cannot be read without pickle") as err:
        load_model(model_copy)
    _one_line(err.value)
    assert not marker.exists()


def test_an_npz_with_an_object_array_never_runs(model_copy, tmp_path):
    marker = tmp_path / "pwned"
    p = model_copy / "anomaly_model.npz"
    with np.load(p) as npz:
        arrays = dict(npz)
    np.savez(p, **arrays, coef_extra=np.array([Payload(marker)], dtype=object))
    _reseal_file(model_copy, "anomaly_model.npz")
    with pytest.raises(ModelError, match=r"anomaly_model.npz: cannot be read without pickle.*[Oo]bject arrays"):
        load_model(model_copy)
    assert not marker.exists()
    with np.load(p, allow_pickle=True) as npz:  # the payload is live: a loader allowing pickles runs it
        npz["coef_extra"]
    assert marker.exists()


def test_a_signed_directory_refuses_a_replaced_file_before_reading_it(model_copy, monkeypatch):
    monkeypatch.setenv("STREAMER_MODEL_KEY", "secret")
    _write_meta(model_copy, seal(json.loads((model_copy / "metadata.json").read_text()), b"secret"))
    verify(model_copy)  # the signed copy is good
    (model_copy / "vectorizer.json").write_text('{"class": "LogVectorizer", "params": {}}')
    _reseal_file(model_copy, "vectorizer.json")  # the attacker cannot re-sign
    with pytest.raises(ModelError, match=r"TAMPERED|unsigned, and STREAMER_MODEL_KEY is set"):
        load_model(model_copy)


@pytest.mark.parametrize("name", ["LinearWeights", "Features", "_Lookup", "os", "SimpleNamespace", 7])
def test_a_part_naming_a_class_that_is_not_a_model_part_is_refused(model_copy, name):
    (model_copy / "vectorizer.json").write_text(json.dumps({"class": name, "params": {}}))
    _reseal_file(model_copy, "vectorizer.json")
    with pytest.raises(ModelError, match=r"is not a vectorizer class of streamer.ml.features") as err:
        load_model(model_copy)
    _one_line(err.value)


def test_parts_that_do_not_fit_together_are_refused_at_load(model_copy, tmp_path):
    meta, objs = load_model(model_copy)
    objs["level_model"].coef_ = objs["level_model"].coef_[:, :-1]  # one feature short
    resave(meta, objs, model_copy)
    with pytest.raises(ModelError, match=r"parts do not fit together"):
        load_model(model_copy)


def test_metadata_only_edit_is_refused(model_copy):
    # the tester's attack: threshold 0.07 -> 1.0 and a forged version, artifacts untouched
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["anomaly_threshold"] = 1.0
    _write_meta(model_copy, meta)
    with pytest.raises(ModelError, match=r"TAMPERED: content digest") as err:
        load_model(model_copy)
    _one_line(err.value)


def test_forged_version_is_refused_even_with_a_recomputed_digest(model_copy):
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["model_version"] = "m-000000000000"
    _write_meta(model_copy, seal(meta))
    with pytest.raises(ModelError, match=r"model_version"):
        verify(model_copy)


@pytest.mark.parametrize(
    "signed_with, key, ok", [(None, None, True), (b"k1", b"k1", True), (None, b"k1", False), (b"k2", b"k1", False)]
)
def test_signature_policy(model_copy, monkeypatch, signed_with, key, ok):
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
        with pytest.raises(ModelError, match=r"unsigned|signature"):
            verify(model_copy)


def test_library_versions_are_recorded_not_checked(model_copy):
    # arrays and JSON do not depend on scikit-learn or joblib: another release of them loads the model
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["library_versions"] = {**meta["library_versions"], "sklearn": "0.1.0", "joblib": "0.1", "python": "3.99"}
    _write_meta(model_copy, seal(meta))
    load_model(model_copy)


@pytest.mark.parametrize("command", [["status"], ["score"], ["evaluate", "--data", os.devnull]])
def test_cli_refuses_a_bad_model_with_one_line_and_nonzero_exit(model_copy, command, capsys, monkeypatch):
    p = model_copy / "anomaly_model.npz"
    p.write_bytes(p.read_bytes() + b"x")
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    rc = main([*command, "--models", str(model_copy)])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.count("\n") == 1 and "anomaly_model.npz" in err and "Traceback" not in err


# --- the converter for pickled model directories of older releases ----------------------------------------


def legacy_dir(src, dest: Path, key: bytes | None = None) -> Path:
    """A model directory as releases before schema 2 wrote it: joblib pickles, sealed the same way."""
    import joblib

    from streamer.ml.artifacts import _DERIVED, library_versions

    meta, objs = load_model(src)
    dest.mkdir(parents=True)
    files = {}
    for part, name in zip(PARTS, LEGACY_ARTIFACTS):
        joblib.dump(objs[part], dest / name, compress=3)
        files[name] = {
            "sha256": hashlib.sha256((dest / name).read_bytes()).hexdigest(),
            "bytes": (dest / name).stat().st_size,
        }
    old = {
        "schema": 1,
        "model_version": "m-"
        + hashlib.sha256("".join(files[n]["sha256"] for n in LEGACY_ARTIFACTS).encode()).hexdigest()[:12],
        "trained_at": meta["trained_at"],
        **{k: v for k, v in meta.items() if k not in _DERIVED},
        "library_versions": library_versions(),
        "artifacts": files,
        "anomaly_threshold": meta["anomaly_threshold"],
    }
    _write_meta(dest, seal(old, key))
    return dest


@pytest.fixture
def legacy(model_copy, tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMER_MODEL_KEY", raising=False)
    monkeypatch.delenv("STREAMER_MODEL_KEY_FILE", raising=False)
    return legacy_dir(model_copy, tmp_path / "legacy")


def test_a_pickled_directory_is_refused_but_converts_to_the_same_predictions(legacy, model_copy):
    with pytest.raises(ModelError, match=r"pickled artifacts are not loaded"):
        Scorer.load(legacy)
    old_version = json.loads((legacy / "metadata.json").read_text())["model_version"]
    meta = convert(legacy, trust_unsigned=True)
    assert sorted(p.name for p in legacy.iterdir()) == sorted([*ARTIFACTS, "metadata.json"])  # pickles gone
    assert meta["converted_from"] == {"model_version": old_version, "format": "joblib"}
    assert meta["model_version"] != old_version
    _same_scores(Scorer.load(model_copy).score(PROBE), Scorer.load(legacy).score(PROBE))
    with pytest.raises(ModelError, match=r"already"):
        convert(legacy)


def test_convert_unpickles_an_unsigned_directory_only_when_told(legacy, tmp_path):
    marker = tmp_path / "pwned"
    (legacy / "level_model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    _reseal_file(legacy, "level_model.joblib")
    verify_legacy = json.loads((legacy / "metadata.json").read_text())  # consistent and unsigned: nothing
    assert "signature" not in verify_legacy  # tells the operator's own files from these
    with pytest.raises(ModelError, match=r"unsigned; converting unpickles it"):
        convert(legacy)
    assert not marker.exists()


def test_convert_refuses_a_tampered_signed_directory_before_unpickling(model_copy, tmp_path, monkeypatch):
    d = legacy_dir(model_copy, tmp_path / "legacy", key=b"k")
    good = legacy_dir(model_copy, tmp_path / "good", key=b"k")
    monkeypatch.setenv("STREAMER_MODEL_KEY", "k")
    marker = tmp_path / "pwned"
    (d / "anomaly_model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    _reseal_file(d, "anomaly_model.joblib")  # cannot re-sign
    with pytest.raises(ModelError, match=r"TAMPERED|unsigned, and STREAMER_MODEL_KEY is set"):
        convert(d, trust_unsigned=True)
    assert not marker.exists()
    meta = convert(good, tmp_path / "out")  # signed and verified: no flag needed; the result is signed too
    assert "signature" in meta and verify(tmp_path / "out")["model_version"] == meta["model_version"]


@pytest.mark.parametrize(
    "lib,value,ok",
    [
        ("sklearn", "same-patch-differs", True),
        ("sklearn", "other-minor", False),
        ("numpy", "other-minor", True),
        ("numpy", "other-major", False),
        ("python", "older-minor", True),
        ("python", "newer-minor", False),
    ],
)
def test_version_policy_of_pickled_models(legacy, lib, value, ok):
    meta = json.loads((legacy / "metadata.json").read_text())
    cur = dict(meta["library_versions"])
    major, minor = (int(x) for x in cur[lib].split(".")[:2])
    want = {
        "same-patch-differs": f"{major}.{minor}.999",
        "other-minor": f"{major}.{minor + 1}.0",
        "other-major": f"{major + 1}.0.0",
        "older-minor": f"{major}.{max(minor - 1, 0)}.0",
        "newer-minor": f"{major}.{minor + 1}.0",
    }[value]
    meta["library_versions"] = {**cur, lib: want}
    if ok:
        check_versions(meta, legacy / "metadata.json", current=cur)
    else:
        with pytest.raises(ModelError, match=f"trained with (?i:{'scikit-learn' if lib == 'sklearn' else lib}) {want}"):
            check_versions(meta, legacy / "metadata.json", current=cur)


@pytest.mark.parametrize(
    "attack",
    [
        "pickle as level_model.npz",
        "pickle beside the parts",
        "threshold edit",
        "old format, pickle with its sha256 updated",
    ],
)
@pytest.mark.slow
def test_streamer_run_refuses_the_issues_attacks_before_connecting_and_runs_no_code(tmp_path, attack):
    # issue 11 row 3 through the real command: code from the model directory ran as the streamer process, and
    # a metadata-only edit (threshold 0.07 -> 1.0) was accepted
    import shutil
    import time

    models, marker = tmp_path / "models", tmp_path / "pwned"
    shipped = Path(__file__).resolve().parents[2] / "models"
    if attack.startswith("old format"):  # the issue's exact case: the loader of the time unpickled this
        legacy_dir(shipped, models)
        (models / "level_model.joblib").write_bytes(pickle.dumps(Payload(marker)))
        _reseal_file(models, "level_model.joblib")
    else:
        shutil.copytree(shipped, models)
    if attack.startswith("old format"):
        expected = "pickled artifacts are not loaded (anomaly_model.joblib, level_model.joblib, vectorizer.joblib)"
    elif attack == "threshold edit":
        meta = json.loads((models / "metadata.json").read_text())
        _write_meta(models, {**meta, "anomaly_threshold": 1.0})
        expected = "TAMPERED: content digest"
    elif attack == "pickle beside the parts":
        (models / "anomaly_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
        expected = "pickled artifacts are not loaded (anomaly_model.pkl)"
    else:
        (models / "level_model.npz").write_bytes(pickle.dumps(Payload(marker)))
        _reseal_file(models, "level_model.npz")  # sha256, version and digest all consistent again
        expected = "level_model.npz: cannot be read without pickle"
    env = {
        "PATH": "/usr/bin:/bin",
        "STREAMER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "STREAMER_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "STREAMER_MODELS_DIR": str(models),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("streamer run: ") and expected in last, last
    assert not marker.exists()
    assert time.monotonic() - started < 30  # refused at start-up, not after waiting for the services
