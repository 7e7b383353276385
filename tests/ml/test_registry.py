"""Model versions and the promotion guard (streamer.ml.registry, `streamer models`): no services needed."""

from __future__ import annotations

import json
import shutil

import pytest

from streamer.cli import main
from streamer.errors import ModelError
from streamer.ml import registry
from streamer.ml.artifacts import seal


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two small models (different data, so different versions): (dir, metadata) each."""
    from streamer.ml.artifacts import save_model
    from streamer.ml.corpus import generate
    from streamer.ml.train import train

    out = []
    for seed in (20, 21):
        events = generate(1000, seed=seed)
        model = train(
            [e["message"] for e in events],
            [e["labels"]["level"] for e in events],
            timestamps=[e["@timestamp"] for e in events],
            source=f"test seed {seed}",
            seed=seed,
            refit=False,
        )
        d = tmp_path_factory.mktemp(f"model-{seed}")
        out.append((d, save_model(model, d)))
    return out


def with_f1(d, f1: float) -> None:
    """Set the recorded held-out macro-F1, re-sealing the content digest as a legitimate re-save would."""
    meta = json.loads((d / "metadata.json").read_text())
    meta["metrics"]["level"]["macro_f1"] = f1
    (d / "metadata.json").write_text(json.dumps(seal(meta)))


@pytest.fixture
def dirs(tmp_path, trained):
    (a, _), (b, _) = trained
    default, cand = tmp_path / "models", tmp_path / "candidate"
    shutil.copytree(a, default)
    shutil.copytree(b, cand)
    with_f1(default, 0.90)
    return default, cand


def files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_worse_beyond_the_margin_is_refused_unless_forced(dirs, capsys):
    default, cand = dirs
    with_f1(cand, 0.85)
    before = files(default)
    assert main(["models", "promote", str(cand), "--models", str(default)]) == 2
    out, err = capsys.readouterr()
    assert "candidate: m-" in out and "level macro-F1 0.8500" in out
    assert "current:   m-" in out and "level macro-F1 0.9000" in out
    assert out.count("; check: unsigned\n") == 2, out  # verification status of both
    assert err.strip() == (
        "streamer models: refused: the candidate's level macro-F1 0.8500 is 0.0500 below the "
        "current default's 0.9000 (margin 0.01); pass --force to promote anyway"
    )
    assert files(default) == before
    assert main(["models", "promote", str(cand), "--models", str(default), "--margin", "0.06"]) == 0
    assert files(default) == files(cand)


def test_within_the_margin_is_promoted_and_the_previous_default_kept(dirs, capsys):
    from streamer.ml.artifacts import load_model

    default, cand = dirs
    with_f1(cand, 0.895)
    old = json.loads((default / "metadata.json").read_text())["model_version"]
    new = json.loads((cand / "metadata.json").read_text())["model_version"]
    assert main(["models", "promote", str(cand), "--models", str(default)]) == 0
    out = capsys.readouterr().out
    assert f"promoted: {default} now holds {new}" in out
    assert load_model(default)[0]["model_version"] == new
    root = registry.versions_dir(default)
    assert root == default.parent / "models-versions"
    assert (root / "previous").resolve() == (root / old).resolve()
    assert load_model(root / old)[0]["model_version"] == old and (root / new).is_dir()
    log = [json.loads(line) for line in (root / "promotions.jsonl").read_text().splitlines()]
    assert log[-1]["promoted"] == new and log[-1]["previous"] == old and log[-1]["forced"] is False
    assert not [p for p in default.parent.iterdir() if ".promote-" in p.name], "staging directory left behind"

    # Roll back by promoting `previous`; the list shows both, tagged.
    assert main(["models", "promote", str(root / "previous"), "--models", str(default), "--force"]) == 0
    assert load_model(default)[0]["model_version"] == old
    capsys.readouterr()
    assert main(["models", "list", "--models", str(default)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:5] == ["VERSION", "TRAINED_AT", "ROWS", "MACRO_F1", "TAGS"]
    tags = {line.split()[0]: line.split()[4] for line in listed[2:]}
    assert tags == {old: "default", new: "previous"}


def test_forced_promotion_still_verifies_the_candidate(dirs):
    default, cand = dirs
    with_f1(cand, 0.10)
    result = registry.promote(cand, default, force=True)
    assert result.promoted and any(line.startswith("forced: ") for line in result.lines)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "unlisted pickle"])
def test_a_tampered_candidate_is_refused(dirs, damage):
    default, cand = dirs
    with_f1(cand, 0.99)
    target = cand / "level_model.npz"
    data = target.read_bytes()
    if damage == "flipped byte":
        target.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncated":
        target.write_bytes(data[:-10])
    else:
        (cand / "extra.pkl").write_bytes(b"not listed")
    before = files(default)
    with pytest.raises(
        ModelError,
        match=r"^candidate refused: .*(sha256 differs|truncated|pickled artifacts are "
        r"not loaded)",
    ):
        registry.promote(cand, default, force=True)
    assert files(default) == before
    assert not registry.versions_dir(default).exists()


def test_same_version_is_a_no_op_and_a_missing_default_is_installed(dirs, tmp_path):
    default, cand = dirs
    assert not registry.promote(default, default).promoted
    fresh = tmp_path / "fresh"
    result = registry.promote(cand, fresh)
    assert result.promoted and result.previous_version is None
    assert main(["models", "promote", str(cand), "--models", str(fresh), "--margin", "2"]) == 2


def test_promote_shows_the_signature_status_and_replaces_a_pickled_default(dirs, tmp_path, monkeypatch, capsys):
    from tests.ml.test_artifacts import legacy_dir

    default, cand = dirs
    monkeypatch.delenv("STREAMER_MODEL_KEY_FILE", raising=False)
    monkeypatch.setenv("STREAMER_MODEL_KEY", "k")
    meta = json.loads((cand / "metadata.json").read_text())
    (cand / "metadata.json").write_text(json.dumps(seal(meta, b"k")))
    monkeypatch.delenv("STREAMER_MODEL_KEY")
    old = tmp_path / "old"
    legacy_dir(default, old)  # the default as an older release left it: pickles
    monkeypatch.setenv("STREAMER_MODEL_KEY", "k")
    assert main(["models", "promote", str(cand), "--models", str(old), "--force"]) == 0
    out = capsys.readouterr().out
    assert "; check: ok\n" in out.split("current:")[0], out  # the candidate: signed and verified
    assert "current:   " in out and "pickled artifacts are not loaded" in out.split("current:")[1]
    assert not list(old.glob("*.joblib")), "the pickles of the replaced default are left behind"
    assert registry.list_versions(old)[0].status == "ok"
