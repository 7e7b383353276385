"""Model directories: write them, and load them only after checking them — without ever unpickling.

A model directory holds metadata.json plus, per part (vectorizer, level_model, anomaly_model), a `.npz` of
plain numeric/string arrays (read with numpy's allow_pickle=False) and a `.json` naming the part's class and
its JSON parameters; the loader rebuilds each part only through `cls.from_state(arrays, params)`, where cls
must be a class of streamer.ml.features / streamer.ml.models (every model class has to_state/from_state).
Nothing in the directory can run code on load. Checks, before any artifact is opened:
  - metadata.json exists and parses, and lists exactly the expected artifacts with their size and sha256;
  - a directory holding pickles (*.joblib, *.pkl, *.pickle: the format before schema 2) is refused with one
    line; `streamer models convert DIR` re-saves it (it unpickles, so only after the checks below, and only
    a signed directory unless the operator passes --trust-unsigned);
  - the content digest over metadata.json (which holds every artifact's sha256), the model_version derived
    from the artifacts, and the HMAC signature when STREAMER_MODEL_KEY is set (check_integrity);
  - no other file sits in the directory (README*, *.md and dot-files are allowed);
  - every listed file exists, has the recorded size (else "truncated"/"size differs") and sha256.
Then an object array (which would need pickle), an unknown class or parts that do not fit together (feature
counts) are refused too. Every failure is a ModelError with one line naming the file and what is wrong.
Library versions are recorded, not checked: arrays and JSON do not depend on scikit-learn or joblib (pickled
models did; their version policy, check_versions, now guards only the converter).

model_version is derived from the artifacts' content ("m-" + 12 hex digits of a hash over their sha256s),
and the files are written byte-for-byte deterministically (fixed zip timestamps), so the same weights give
the same model_version; trained_at records when.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from streamer.errors import ModelError, one_line

PARTS = ("vectorizer", "level_model", "anomaly_model")
ARTIFACTS = tuple(f"{part}.{ext}" for part in PARTS for ext in ("npz", "json"))
LEGACY_ARTIFACTS = ("vectorizer.joblib", "level_model.joblib", "anomaly_model.joblib")  # schema 1: pickles
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
METADATA = "metadata.json"
SCHEMA = 2
# where each part's class must be defined, and the method the scorer calls on it
_CLASSES = {
    "vectorizer": ("streamer.ml.features", "transform"),
    "level_model": ("streamer.ml.models", "predict"),
    "anomaly_model": ("streamer.ml.models", "score_samples"),
}
# metadata fields save_model writes itself (everything else is the model's own metadata)
_DERIVED = (
    "schema",
    "model_version",
    "trained_at",
    "library_versions",
    "artifacts",
    "digest",
    "signature",
    "anomaly_threshold",
)


def library_versions() -> dict[str, str]:
    # From the installed distributions: importing scikit-learn only to read its version would double the
    # start-up time of `streamer run`.
    from importlib.metadata import version

    return {
        "sklearn": version("scikit-learn"),
        "numpy": version("numpy"),
        "scipy": version("scipy"),
        "joblib": version("joblib"),
        "python": platform.python_version(),
    }


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


def is_legacy(meta: dict) -> bool:
    """metadata.json of a pickled (schema 1) model directory."""
    return sorted(meta.get("artifacts") or ()) == sorted(LEGACY_ARTIFACTS)


def _version_of(files: dict, names=ARTIFACTS) -> str:
    return "m-" + hashlib.sha256("".join(files[n]["sha256"] for n in names).encode()).hexdigest()[:12]


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
    if meta["model_version"] != _version_of(meta["artifacts"], LEGACY_ARTIFACTS if is_legacy(meta) else ARTIFACTS):
        raise ModelError(f"{path}: TAMPERED: model_version {meta['model_version']!r} is not derived from the artifacts")
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


def _write_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed's layout, but with fixed zip timestamps (same arrays, same bytes, same version) and
    allow_pickle=False (an object array is refused when saving, not only when loading)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(arrays[name]), allow_pickle=False)


def _write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def _replace_in(out: Path, name: str, write, content) -> dict:
    path = out / name
    tmp = path.with_name(f".{name}.tmp")
    write(tmp, content)
    os.replace(tmp, path)
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def remove_legacy(d: Path) -> None:
    """Delete the pickles of the old format once metadata.json no longer lists them (only those names)."""
    for name in LEGACY_ARTIFACTS:
        (Path(d) / name).unlink(missing_ok=True)


def save_model(model, out_dir, *, trained_at: str | None = None, libraries: dict | None = None) -> dict:
    """Write each part's .npz and .json (from its to_state()), then metadata.json (atomically, last), then
    remove pickles of the old format. Returns the metadata. trained_at/libraries: kept when re-saving."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in PARTS:
        obj = getattr(model, part)
        _class_of(part, type(obj).__name__, out / f"{part}.json")  # refuse now what could not be loaded
        arrays, params = obj.to_state()
        files[f"{part}.npz"] = _replace_in(out, f"{part}.npz", _write_npz, arrays)
        files[f"{part}.json"] = _replace_in(
            out, f"{part}.json", _write_json, {"class": type(obj).__name__, "params": params}
        )
    meta = {
        "schema": SCHEMA,
        "model_version": _version_of(files),
        "trained_at": trained_at or _now(),
        **model.metadata,
        "library_versions": libraries or library_versions(),
        "artifacts": files,
    }
    meta["anomaly_threshold"] = model.anomaly_threshold
    meta = seal(meta, model_key())
    tmp = out / f".{METADATA}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, out / METADATA)
    remove_legacy(out)
    return meta


def resave(meta: dict, objects: dict, out_dir, **kwargs) -> dict:
    """Save loaded parts ({part: object}) again with metadata's own fields (the derived ones are rewritten)."""
    anomaly = objects["anomaly_model"]
    if hasattr(anomaly, "threshold_"):  # parts saved before threshold_ existed default it; metadata has the cut
        anomaly.threshold_ = float(meta["anomaly_threshold"])
    model = SimpleNamespace(
        **objects,
        metadata={k: v for k, v in meta.items() if k not in _DERIVED},
        anomaly_threshold=meta["anomaly_threshold"],
    )
    return save_model(model, out_dir, **kwargs)


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
    if not isinstance(arts, dict) or (sorted(arts) != sorted(ARTIFACTS) and not is_legacy(meta)):
        raise ModelError(f"{path}: must list exactly {', '.join(ARTIFACTS)}")
    for name, info in arts.items():
        if not (isinstance(info, dict) and isinstance(info.get("sha256"), str) and isinstance(info.get("bytes"), int)):
            raise ModelError(f"{path}: entry for {name} needs sha256 and bytes")
    return meta


def _major_minor(v: str) -> tuple[int, ...]:
    parts = []
    for p in str(v).split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_versions(meta: dict, path: Path, current: dict[str, str] | None = None) -> None:
    """Version policy for PICKLED models (the converter): scikit-learn major.minor must equal the training one
    (old releases pickled its estimators, supported only within a minor release); numpy, scipy and joblib the
    same major; Python 3.x with x >= the training minor."""
    cur = current or library_versions()
    want = meta.get("library_versions") or {}
    for lib in ("sklearn", "numpy", "scipy", "joblib", "python"):
        if lib not in want:
            raise ModelError(f"{path}: library_versions.{lib} is missing")
    if _major_minor(want["sklearn"]) != _major_minor(cur["sklearn"]):
        raise ModelError(
            f"{path}: trained with scikit-learn {want['sklearn']}, this is {cur['sklearn']} "
            f"(major.minor must match; retrain with `streamer train`)"
        )
    for lib in ("numpy", "scipy", "joblib"):
        if _major_minor(want[lib])[0] != _major_minor(cur[lib])[0]:
            raise ModelError(
                f"{path}: trained with {lib} {want[lib]}, this is {cur[lib]} "
                f"(major version must match; retrain with `streamer train`)"
            )
    w, c = _major_minor(want["python"]), _major_minor(cur["python"])
    if w[0] != c[0] or c < w:
        raise ModelError(
            f"{path}: trained with Python {want['python']}, this is {cur['python']} "
            f"(needs Python {w[0]}.x >= {want['python']})"
        )


def refuse_pickles(d: Path, meta: dict | None = None) -> None:
    """One line for a directory in the pickled format (or with any pickle in it): it is never loaded."""
    found = sorted(e for e in os.listdir(d) if e.lower().endswith(PICKLE_SUFFIXES))
    if found or (meta is not None and is_legacy(meta)):
        what = ", ".join(found) or f"{METADATA} lists *.joblib"
        raise ModelError(
            f"{d}: pickled artifacts are not loaded ({what}); retrain or convert with `streamer models convert {d}`"
        )


def _check_files(d: Path, meta: dict, names) -> None:
    listed = set(meta["artifacts"])
    for entry in sorted(os.listdir(d)):
        if entry != METADATA and entry not in listed and not _allowed_extra(entry):
            raise ModelError(f"{d / entry}: not listed in {METADATA}; refusing a model directory with unlisted files")
    for name in names:
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


def check(models_dir) -> tuple[dict, str]:
    """All checks short of reading the arrays. Returns (metadata, "ok" | "unsigned" | "signed (no key to
    check)"). Raises ModelError."""
    d = Path(models_dir)
    if d.is_dir():
        refuse_pickles(d)
    meta = read_metadata(d)
    refuse_pickles(d, meta)
    status = check_integrity(meta, d / METADATA, model_key())  # before any artifact is opened
    _check_files(d, meta, ARTIFACTS)
    return meta, status


def verify(models_dir) -> dict:
    """check(), returning the metadata only."""
    return check(models_dir)[0]


def _class_of(part: str, name, where: Path):
    """The class a part's .json names, if it is one of ours that can be rebuilt from a state."""
    import importlib

    module_name, method = _CLASSES[part]
    module = importlib.import_module(module_name)
    cls = getattr(module, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if not (
        isinstance(cls, type)
        and cls.__module__ == module_name
        and callable(getattr(cls, "from_state", None))
        and callable(getattr(cls, method, None))
    ):
        raise ModelError(f"{where}: class {name!r} is not a {part.replace('_', ' ')} class of {module_name}")
    return cls


def _read_part(d: Path, part: str):
    doc_path, npz_path = d / f"{part}.json", d / f"{part}.npz"
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        name, params = doc["class"], doc["params"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{doc_path}: not a part description ({err.__class__.__name__})") from None
    cls = _class_of(part, name, doc_path)
    try:
        # allow_pickle=False: an object array (the only kind that needs pickle) raises instead of loading
        loaded = np.load(npz_path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:
        raise ModelError(f"{npz_path}: cannot be read without pickle ({one_line(err, with_type=True)})") from None
    try:
        return cls.from_state(arrays, params)
    except Exception as err:
        raise ModelError(f"{npz_path}: does not make a {name} ({one_line(err, with_type=True)})") from None


def load_model(models_dir) -> tuple[dict, dict]:
    """Verify, then rebuild each part from its arrays and JSON. Returns (metadata, {part: object})."""
    d = Path(models_dir)
    meta = verify(d)
    objects = {part: _read_part(d, part) for part in PARTS}
    try:  # parts that do not fit together (feature counts) fail here rather than on the first batch
        features = objects["vectorizer"].transform(["model check"])
        objects["level_model"].predict(features)
        objects["anomaly_model"].score_samples(features)
    except Exception as err:
        raise ModelError(f"{d}: its parts do not fit together ({one_line(err, with_type=True)})") from None
    return meta, objects


_LEGACY_CLASSES = {
    "vectorizer": ("LogVectorizer",),
    "level_model": ("LevelModel", "ConstantLevel"),
    "anomaly_model": ("SupervisedAnomaly", "RarityAnomaly"),
}


def convert(src, out=None, trust_unsigned: bool = False) -> dict:
    """Re-save a pickled (schema 1) model directory as .npz/.json: into `out`, else in place (its pickles are
    removed). This unpickles, so only after the digest, signature, file and version checks passed, and, when
    the directory is not signed with STREAMER_MODEL_KEY, only with trust_unsigned: an unsigned digest shows
    the files are consistent, not who wrote them. Returns the new metadata (weights unchanged)."""
    import joblib

    from streamer.ml import features, models

    d = Path(src)
    meta = read_metadata(d)
    if not is_legacy(meta):
        raise ModelError(f"{d}: already in the .npz/.json format; nothing to convert")
    status = check_integrity(meta, d / METADATA, model_key())
    if status != "ok" and not trust_unsigned:
        raise ModelError(
            f"{d}: {status}; converting unpickles it, which runs whatever code its author put in "
            f"(sign it with STREAMER_MODEL_KEY, or pass --trust-unsigned for a directory you made)"
        )
    _check_files(d, meta, LEGACY_ARTIFACTS)
    check_versions(meta, d / METADATA)
    objects = {}
    for part, name in zip(PARTS, LEGACY_ARTIFACTS):
        try:
            obj = joblib.load(d / name)
        except Exception as err:  # the hash matched, so this is a library incompatibility
            raise ModelError(f"{d / name}: cannot be unpickled ({err.__class__.__name__})") from None
        allowed = tuple(getattr(features if part == "vectorizer" else models, c) for c in _LEGACY_CLASSES[part])
        if not isinstance(obj, allowed):
            raise ModelError(f"{d / name}: holds a {type(obj).__name__}, not a {allowed[0].__name__}")
        objects[part] = obj
    meta["converted_from"] = {"model_version": meta["model_version"], "format": "joblib"}
    dest = Path(out) if out is not None else d
    new = resave(meta, objects, dest, trained_at=meta.get("trained_at"), libraries=meta["library_versions"])
    load_model(dest)  # the result is checked like any other model directory
    return new


if __name__ == "__main__":  # pragma: no cover - manual check: python -m streamer.ml.artifacts DIR
    print(json.dumps(verify(sys.argv[1] if len(sys.argv) > 1 else "models"), indent=2)[:2000])
