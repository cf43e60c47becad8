"""Fuzzing the artefact documents and the configuration: structure-aware mutations end as clean errors.

Two families, beside :mod:`fuzz_loaders` (checkpoints):

* **documents**: a saved subspace set, counterfactual result and audit (made once from the res32
  fixture). Each mutation changes one entry of the JSON document (deleted; replaced by a value of
  another type: null, a string, a 5 000-digit number, NaN, a list nested 100 000 deep, an object;
  a number negated or made huge), then *reseals* it (the integrity manifest recomputed, as an
  attacker can: it is a checksum, not a signature), or damages its text (invalid UTF-8, a cut).
* **configs**: a valid TOML configuration with one key given a value of another type, an unknown
  key or section, or its text damaged.

Each case is loaded in a forked child with a watchdog (:func:`fuzz_loaders.outcome_in_child`).
Outcomes: ``clean error`` (a :class:`~cfexplain.errors.CfexplainError` naming the file),
``unnamed error``, ``raw error`` (any other exception), ``crash`` (the child died), ``hang``,
``loaded`` (the mutation left the document valid: e.g. a number changed within range). The peak
memory of the children is reported beside the counts.

Usage::

    python benchmarks/fuzz_documents.py [--mutations 10000] [--seed 0] [--timeout 20] [--families documents configs]

Prints a table per family and writes ``benchmarks/results/fuzz-documents+configs.json`` (or
``fuzz-documents.json``, ``fuzz-configs.json`` for one family);
``tests/test_hostile_files.py`` runs a few dozen of each in the default suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_loaders import FIXTURES, outcome_in_child, peak_child_memory_mib  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUTCOMES = ("clean error", "unnamed error", "raw error", "crash", "hang", "loaded")
PROBLEMS = ("unnamed error", "raw error", "crash", "hang")
DOCUMENTS = {"subspaces": "subspaces.json", "counterfactuals": "result.json", "audit": "audit.json"}


def make_artefacts(folder: Path) -> dict[str, Path]:
    """A subspace set, a counterfactual result and an audit of the res32 fixture, saved in ``folder``."""
    from torch import nn

    from cfexplain import load_generator
    from cfexplain.audit import audit
    from cfexplain.classifiers import Classifier, OutputSpec
    from cfexplain.subspaces import Subspace, SubspaceSet

    class Brightness(nn.Module):
        def forward(self, x):
            score = 8 * x.mean(dim=(1, 2, 3))
            return torch.stack([-score, score], dim=1)

    generator = load_generator(FIXTURES / "stylegan2" / "nvlabs_res32.pkl")
    dim = generator.latent_dim("w")
    bases = torch.linalg.qr(torch.randn(dim, 6, generator=torch.Generator().manual_seed(0)))[0]
    subspaces = SubspaceSet([Subspace(name, bases[:, 3 * i:3 * i + 3], torch.tensor([3.0, 2.0, 1.0]), "w",
                                      generator.latent_shape("w")) for i, name in enumerate(("first", "second"))])
    subspaces.save(folder / "subspaces")
    classifier = Classifier(Brightness(), output=OutputSpec.softmax(["dark", "bright"]))
    result = audit(generator, classifier, subspaces, 2, joint=False, controls=2, progress=False)
    result.save(folder / "audit")
    return {"subspaces": folder / "subspaces", "counterfactuals": folder / "audit" / "counterfactuals",
            "audit": folder / "audit"}


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path to an entry of a JSON value (keys and indices), the integrity entry left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "integrity":
                yield (*prefix, key)
                yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _replacement(rng: random.Random, old: Any) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: None, lambda: "x", lambda: True, lambda: [], lambda: {}, lambda: float("nan"), lambda: -1,
        lambda: 10 ** 30, lambda: [[[[[]]]]], lambda: {"a": 1}, lambda: "é" * 1000,
    ]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += [lambda: -old, lambda: old * 1e30, lambda: float("inf")]
    return rng.choice(choices)()


def mutate_document(text: str, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of a sealed JSON document: ``(kind, new file bytes)``, resealed unless the
    mutation damages the text itself."""
    from cfexplain._integrity import seal

    document = json.loads(text)
    roll = rng.random()
    if roll < 0.05:
        return "invalid utf-8", text.encode()[:50] + b"\xff\xfe" + text.encode()[50:]
    if roll < 0.08:
        return "deep nesting", text.encode()[:-1] + b', "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    if roll < 0.11:
        return "huge number", text.encode()[:-1] + b', "huge": ' + b"9" * 5000 + b"}"
    if roll < 0.14:
        cut = rng.randrange(len(text))
        return "cut", text.encode()[:cut]
    paths = list(_paths(document))
    path = rng.choice(paths)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.3 and isinstance(parent, dict):
        del parent[path[-1]]
        kind = "deleted"
    else:
        parent[path[-1]] = _replacement(rng, parent[path[-1]])
        kind = "retyped"
    body = {key: value for key, value in document.items() if key != "integrity"}
    tensors = _recorded_tensors(document)
    sealed = seal(body, {})
    if tensors is not None:
        sealed["integrity"]["tensors"] = tensors  # the tensors' own hashes, as recorded
    return f"{kind} {'/'.join(map(str, path[:2]))}", json.dumps(sealed).encode()


def _recorded_tensors(document: dict) -> dict | None:
    integrity = document.get("integrity")
    return integrity.get("tensors") if isinstance(integrity, dict) and integrity.get("tensors") else None


CONFIG = """[generator]
checkpoint = "zoo:dcgan"
device = "cpu"

[classifier]
model = "zoo:gender"
labels = ["female", "male"]
threshold = 0.5

[classifier.preprocessing]
size = 64
value_range = [-1.0, 1.0]

[audit]
subspaces = "subspaces"
faces = 8
seed = 0
budget = 0.2
controls = 4
joint = false
fail_if = ["evidence[lip_colour]"]
out = "out"
"""


def mutate_config(rng: random.Random) -> tuple[str, bytes]:
    """One mutation of :data:`CONFIG`: a value of another type, an unknown key or section, or damaged text."""
    lines = CONFIG.splitlines()
    values = [i for i, line in enumerate(lines) if " = " in line]
    roll = rng.random()
    if roll < 0.6:
        i = rng.choice(values)
        key = lines[i].split(" = ")[0]
        value = rng.choice(['true', '"text"', '12', '1.5', '[1, 2]', '["a"]', '{a = 1}', '2020-01-01', 'nan', 'inf',
                            '-7', '"' + "x" * 10000 + '"', '999999999999999999999'])
        lines[i] = f"{key} = {value}"
        return f"retyped {key}", "\n".join(lines).encode()
    if roll < 0.75:
        lines.insert(rng.choice(values), "bogus_key = 1")
        return "unknown key", "\n".join(lines).encode()
    if roll < 0.8:
        return "unknown section", (CONFIG + "\n[nonsense]\na = 1\n").encode()
    data = bytearray(CONFIG.encode())
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return "bytes", bytes(data)


def _load_document(kind: str, path: str) -> None:
    from cfexplain import SubspaceSet
    from cfexplain.audit import AuditResult
    from cfexplain.counterfactual import CounterfactualResult

    loaded = {"subspaces": SubspaceSet.load, "counterfactuals": CounterfactualResult.load, "audit": AuditResult.load}[kind](path)
    if kind == "audit":
        loaded.summary()  # a loaded audit must also read out


def _load_config(kind: str, path: str) -> None:
    from cfexplain.cli.config import load_config

    load_config(path)


def _child(load: Callable[[str, str], None], kind: str, path: str, connection) -> None:
    from cfexplain.errors import CfexplainError

    torch.set_num_threads(1)
    try:
        load(kind, path)
        connection.send(("loaded", ""))
    except CfexplainError as exc:
        connection.send(("clean error" if path in str(exc) else "unnamed error",
                         f"{type(exc).__name__}: {exc}"[:300]))
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer is looking for
        connection.send(("raw error", f"{type(exc).__name__}: {exc}"[:300]))


def outcome(load: Callable[[str, str], None], kind: str, path: Path, timeout: float) -> tuple[str, str]:
    """The outcome of ``load(kind, path)`` in a forked child within ``timeout`` seconds."""
    return outcome_in_child(_child, (load, kind, str(path)), timeout)


FAMILIES = ("documents", "configs")


def run(n_mutations: int, seed: int, timeout: float, folder: Path, progress: bool = False,
        families: tuple[str, ...] = FAMILIES) -> list[dict]:
    """Outcome rows of ``n_mutations`` mutations of each of ``families``: documents (spread over
    the artefacts) and configurations."""
    from tqdm.auto import tqdm

    rng, rows = random.Random(seed), []
    artefacts = make_artefacts(folder / "artefacts") if "documents" in families else {}
    for index in tqdm(range(n_mutations if "documents" in families else 0), desc="damaged documents",
                      disable=not progress):
        kind = list(DOCUMENTS)[index % len(DOCUMENTS)]
        file = artefacts[kind] / DOCUMENTS[kind]
        original = file.read_bytes()
        mutation, data = mutate_document(original.decode(), rng)
        file.write_bytes(data)
        found, detail = outcome(_load_document, kind, artefacts[kind], timeout)
        file.write_bytes(original)
        rows.append({"family": "documents", "source": kind, "mutation": mutation, "outcome": found, "detail": detail})
    for index in tqdm(range(n_mutations if "configs" in families else 0), desc="damaged configs",
                      disable=not progress):
        mutation, data = mutate_config(rng)
        path = folder / f"config-{index}.toml"
        path.write_bytes(data)
        found, detail = outcome(_load_config, "config", path, timeout)
        path.unlink()
        rows.append({"family": "configs", "source": "config", "mutation": mutation, "outcome": found, "detail": detail})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=10_000, help="per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args.mutations, args.seed, args.timeout, Path(folder), progress=True, families=tuple(args.families))
    peak = peak_child_memory_mib()
    summary = {}
    for family in args.families:
        counts = collections.Counter(row["outcome"] for row in rows if row["family"] == family)
        summary[family] = {o: counts.get(o, 0) for o in OUTCOMES}
        print(f"{family}: {sum(counts.values())} files")
        for name in OUTCOMES:
            print(f"  {name:<16} {counts.get(name, 0):>7}")
    print(f"peak memory of a child: {peak:.0f} MiB; {time.perf_counter() - start:.0f} s")
    for row in rows:
        if row["outcome"] in PROBLEMS:
            print(f"  ! {row['family']} {row['source']} {row['mutation']}: {row['outcome']}: {row['detail']}",
                  file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"fuzz-{'+'.join(args.families)}.json").write_text(json.dumps({
        "mutations_per_family": args.mutations, "seed": args.seed, "timeout_s": args.timeout, "counts": summary,
        "peak_child_memory_mib": peak, "seconds": time.perf_counter() - start,
        "problems": [r for r in rows if r["outcome"] in PROBLEMS],
        "machine": platform.platform(), "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
