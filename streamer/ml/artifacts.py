"""Model directories: write them, and load them only after checking them.

A model directory holds metadata.json plus the joblib files it lists with their size and sha256:
vectorizer.joblib, level_model.joblib, anomaly_model.joblib. Loading verifies BEFORE any joblib.load (which
can run arbitrary code from a pickle):
  - metadata.json exists and parses, and lists exactly the expected artifacts;
  - no other file sits in the directory (README*, *.md and dot-files are allowed) — an unlisted pickle is
    refused rather than ignored;
  - every listed file exists, has the recorded size (else "truncated"/"size differs") and sha256;
  - library versions: scikit-learn major.minor must equal the training one (models saved by older releases
    pickled its estimators, which are only supported within a minor release; current ones keep plain numpy
    weights); numpy, scipy and joblib must have the same major version; Python must be 3.x with x >= the
    training minor. Patch/minor differences within those bounds are tolerated.
Every failure is a ModelError with one line naming the file and what is wrong.

model_version is derived from the artifacts' content ("m-" + 12 hex digits of a hash over their sha256s),
so the same training data and seed give the same model_version; trained_at records when.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from streamer.errors import ModelError

ARTIFACTS = ("vectorizer.joblib", "level_model.joblib", "anomaly_model.joblib")
METADATA = "metadata.json"
SCHEMA = 1


def library_versions() -> dict[str, str]:
    # From the installed distributions: importing scikit-learn only to read its version would double the
    # start-up time of `streamer run`.
    from importlib.metadata import version

    return {"sklearn": version("scikit-learn"), "numpy": version("numpy"), "scipy": version("scipy"),
            "joblib": version("joblib"), "python": platform.python_version()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_UNSIGNED_FIELDS = ("digest", "signature")


def content_digest(meta: dict) -> str:
    """sha256 over metadata.json's content as canonical JSON, minus the digest/signature fields. The artifacts'
    sha256s are part of that content, so this one digest covers every file of the model."""
    body = {k: v for k, v in meta.items() if k not in _UNSIGNED_FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _version_of(files: dict) -> str:
    return "m-" + hashlib.sha256("".join(files[n]["sha256"] for n in ARTIFACTS).encode()).hexdigest()[:12]


def model_key() -> bytes | None:
    """The HMAC key from STREAMER_MODEL_KEY, or the file named by STREAMER_MODEL_KEY_FILE; None when unset."""
    key = os.environ.get("STREAMER_MODEL_KEY")
    if key:
        return key.encode()
    key_file = os.environ.get("STREAMER_MODEL_KEY_FILE")
    if key_file:
        try:
            return Path(key_file).read_bytes().strip()
        except OSError as err:
            raise ModelError(f"{key_file}: STREAMER_MODEL_KEY_FILE unreadable ({err.strerror})") from None
    return None


def _signature(key: bytes, digest: str) -> str:
    import hmac

    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def check_integrity(meta: dict, path: Path, key: bytes | None = None) -> str:
    """Digest, derived version and (when a key is set) signature. Returns "ok" (signed and verified) or
    "unsigned"; raises ModelError on any mismatch."""
    import hmac

    if not isinstance(meta.get("digest"), str):
        raise ModelError(f"{path}: no content digest (legacy format refused; re-save with `streamer train`)")
    if content_digest(meta) != meta["digest"]:
        raise ModelError(f"{path}: TAMPERED: content digest differs (metadata edited after saving)")
    if meta["model_version"] != _version_of(meta["artifacts"]):
        raise ModelError(f"{path}: TAMPERED: model_version {meta['model_version']!r} is not derived from "
                         f"the artifacts")
    sig = meta.get("signature")
    if key is None:
        return "unsigned" if sig is None else "signed (no key to check)"
    if not isinstance(sig, str):
        raise ModelError(f"{path}: unsigned, and STREAMER_MODEL_KEY is set (sign with `streamer train`)")
    if not hmac.compare_digest(sig, _signature(key, meta["digest"])):
        raise ModelError(f"{path}: TAMPERED: signature does not match STREAMER_MODEL_KEY")
    return "ok"


def seal(meta: dict, key: bytes | None = None) -> dict:
    """Add the content digest, and the HMAC signature when a key is set."""
    meta = {k: v for k, v in meta.items() if k not in _UNSIGNED_FIELDS}
    meta["digest"] = content_digest(meta)
    if key is not None:
        meta["signature"] = _signature(key, meta["digest"])
    return meta


def save_model(model, out_dir) -> dict:
    """Write the three joblib files, then metadata.json (atomically, last). Returns the metadata."""
    import joblib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objects = {"vectorizer.joblib": model.vectorizer, "level_model.joblib": model.level_model,
               "anomaly_model.joblib": model.anomaly_model}
    files = {}
    for name, obj in objects.items():
        path = out / name
        tmp = path.with_name(f".{name}.tmp")
        joblib.dump(obj, tmp, compress=3)
        os.replace(tmp, path)
        files[name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    meta = {
        "schema": SCHEMA,
        "model_version": _version_of(files),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        **model.metadata,
        "library_versions": library_versions(),
        "artifacts": files,
    }
    meta["anomaly_threshold"] = model.anomaly_threshold
    meta = seal(meta, model_key())
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".metadata.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / METADATA)
    return meta


def _allowed_extra(name: str) -> bool:
    return name.startswith(".") or name.lower().startswith("readme") or name.lower().endswith(".md")


def read_metadata(models_dir) -> dict:
    """metadata.json, checked for shape (not the artifacts). Raises ModelError."""
    d = Path(models_dir)
    if not d.is_dir():
        raise ModelError(f"{d}: model directory not found (train one with `streamer train --out {d}`)")
    path = d / METADATA
    if not path.is_file():
        raise ModelError(f"{path}: missing (not a model directory?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: unreadable or not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: not a JSON object")
    for key in ("model_version", "artifacts", "library_versions", "anomaly_threshold", "levels"):
        if key not in meta:
            raise ModelError(f"{path}: field {key!r} is missing")
    arts = meta["artifacts"]
    if not isinstance(arts, dict) or sorted(arts) != sorted(ARTIFACTS):
        raise ModelError(f"{path}: must list exactly {', '.join(ARTIFACTS)}")
    for name, info in arts.items():
        if not (isinstance(info, dict) and isinstance(info.get("sha256"), str)
                and isinstance(info.get("bytes"), int)):
            raise ModelError(f"{path}: entry for {name} needs sha256 and bytes")
    return meta


def _major_minor(v: str) -> tuple[int, ...]:
    parts = []
    for p in str(v).split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_versions(meta: dict, path: Path, current: dict[str, str] | None = None) -> None:
    cur = current or library_versions()
    want = meta.get("library_versions") or {}
    for lib in ("sklearn", "numpy", "scipy", "joblib", "python"):
        if lib not in want:
            raise ModelError(f"{path}: library_versions.{lib} is missing")
    if _major_minor(want["sklearn"]) != _major_minor(cur["sklearn"]):
        raise ModelError(f"{path}: trained with scikit-learn {want['sklearn']}, this is {cur['sklearn']} "
                         f"(major.minor must match; retrain with `streamer train`)")
    for lib in ("numpy", "scipy", "joblib"):
        if _major_minor(want[lib])[0] != _major_minor(cur[lib])[0]:
            raise ModelError(f"{path}: trained with {lib} {want[lib]}, this is {cur[lib]} "
                             f"(major version must match; retrain with `streamer train`)")
    w, c = _major_minor(want["python"]), _major_minor(cur["python"])
    if w[0] != c[0] or c < w:
        raise ModelError(f"{path}: trained with Python {want['python']}, this is {cur['python']} "
                         f"(needs Python {w[0]}.x >= {want['python']})")


def verify(models_dir) -> dict:
    """All checks short of unpickling. Returns the metadata. Raises ModelError."""
    d = Path(models_dir)
    meta = read_metadata(d)
    check_integrity(meta, d / METADATA, model_key())  # before any artifact is opened
    listed = set(meta["artifacts"])
    for entry in sorted(os.listdir(d)):
        if entry != METADATA and entry not in listed and not _allowed_extra(entry):
            raise ModelError(f"{d / entry}: not listed in {METADATA}; refusing a model directory with "
                             f"unlisted files")
    for name in ARTIFACTS:
        info = meta["artifacts"][name]
        path = d / name
        if not path.is_file():
            raise ModelError(f"{path}: missing (listed in {METADATA})")
        size = path.stat().st_size
        if size != info["bytes"]:
            what = "truncated" if size < info["bytes"] else "larger than recorded"
            raise ModelError(f"{path}: {what} ({size} bytes, {METADATA} records {info['bytes']})")
        if _sha256(path) != info["sha256"]:
            raise ModelError(f"{path}: sha256 differs from {METADATA} (modified or corrupted)")
    check_versions(meta, d / METADATA)
    return meta


def load_model(models_dir) -> tuple[dict, dict]:
    """Verify, then joblib-load. Returns (metadata, {artifact name: object})."""
    import joblib

    from streamer.ml.features import LogVectorizer
    from streamer.ml.models import ConstantLevel, LevelModel, RarityAnomaly, SupervisedAnomaly

    d = Path(models_dir)
    meta = verify(d)
    expected = {"vectorizer.joblib": (LogVectorizer,), "level_model.joblib": (LevelModel, ConstantLevel),
                "anomaly_model.joblib": (SupervisedAnomaly, RarityAnomaly)}
    objects = {}
    for name in ARTIFACTS:
        try:
            obj = joblib.load(d / name)
        except Exception as err:  # the hash matched, so this is a library incompatibility
            raise ModelError(f"{d / name}: cannot be loaded ({err.__class__.__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
        if not isinstance(obj, expected[name]):
            raise ModelError(f"{d / name}: holds a {type(obj).__name__}, not a {expected[name][0].__name__}")
        objects[name] = obj
    return meta, objects


if __name__ == "__main__":  # pragma: no cover - manual check: python -m streamer.ml.artifacts DIR
    print(json.dumps(verify(sys.argv[1] if len(sys.argv) > 1 else "models"), indent=2)[:2000])
