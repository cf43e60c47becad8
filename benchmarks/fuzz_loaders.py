"""Fuzzing the checkpoint loaders: damaged and hostile files end in bounded time, as a clean error.

Mutations of the three res32 fixtures (NVlabs pickle, TensorFlow pickle, rosinality torch file):
byte flips, truncations, insertions, zeroed spans, swapped chunks (``--family bytes``), or
structure-aware changes (``--family structured``: a pickle opcode's argument, such as a dtype
code, a global's name, a shape, a stride or a tuple size; a torch zip entry: its pickle's opcodes,
a storage cut short or grown, a record), and hand-made hostile streams
(deep nesting, huge declared lengths, memo floods, a tensor that claims more elements than its
storage). Each file is loaded with :func:`cfexplain.load_generator` in a forked child with a
watchdog. Outcomes:

* ``clean error``: a :class:`~cfexplain.errors.CfexplainError` whose message names the file;
* ``unnamed error``: a ``CfexplainError`` that does not name the file;
* ``raw error``: any other exception (a raw traceback for the user);
* ``crash``: the child died (a signal such as SIGSEGV, or the kernel's out-of-memory killer);
* ``hang``: still running at the watchdog (``--timeout`` seconds);
* ``silent NaN``: it loaded, but draws NaN or infinite faces for one of 4 seeds truncated
  (ψ = 0.7) with random noise;
* ``loaded, same images`` / ``loaded, changed images``: it loaded (finite weights and probe image,
  as :func:`load_generator` checks) and draws the same / other faces than the original.

The peak memory of the children (their largest resident set) is reported beside the counts.

Usage::

    python benchmarks/fuzz_loaders.py [--mutations 10000] [--seed 0] [--timeout 10] [--family bytes|structured]
                                      [--sources nvlabs_res32.pkl tf_res32.pkl rosinality_res32.pt]

Prints a table and writes ``benchmarks/results/fuzz-loaders.json``. ``tests/test_hostile_files.py``
runs a few hundred of the same mutations in the default suite.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing
import os
import pickle
import pickletools
import platform
import random
import resource
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURES = Path(os.environ.get("CFEXPLAIN_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
SOURCES = ("nvlabs_res32.pkl", "tf_res32.pkl", "rosinality_res32.pt")
OUTCOMES = ("clean error", "unnamed error", "raw error", "crash", "hang", "silent NaN", "loaded, same images",
            "loaded, changed images")
PROBLEMS = ("unnamed error", "raw error", "crash", "hang", "silent NaN")


def hostile_streams() -> Iterator[tuple[str, bytes]]:
    """Hand-made pickles that target the unpickler's time and memory, by name."""
    proto = b"\x80\x04"
    yield "deep marks", proto + b"(" * 200_000 + b"."
    yield "deep lists", proto + b"]" * 300_000 + b"."
    yield "huge BINBYTES length", proto + b"B" + struct.pack("<I", 0xFFFFFFF0) + b"abc."
    yield "huge BINUNICODE8 length", proto + b"\x8d" + struct.pack("<Q", 1 << 60) + b"."
    yield "huge FRAME", proto + b"\x95" + struct.pack("<Q", 1 << 62) + b"N."
    yield "memo flood", proto + b"N" + b"\x94" * 3_000_000 + b"."
    yield "long decimal", b"\x80\x02L" + b"9" * 100_000 + b"L\n."
    yield "pop without mark", proto + b"N" + b"0" * 5 + b"e."
    yield "no STOP", proto + b"N" * 10
    yield "empty", b""
    yield "code-running global", b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
    yield "zero-stride giant tensor", _giant_tensor_pickle()


def _giant_tensor_pickle() -> bytes:
    """A pickle whose one tensor claims 10¹² elements over a one-element storage (zero strides)."""
    class Rebuild:
        def __reduce__(self):
            storage = torch.zeros(1).untyped_storage()
            return (torch._utils._rebuild_tensor_v2, (torch.storage.TypedStorage(wrap_storage=storage,
                                                                                 dtype=torch.float32, _internal=True),
                                                      0, (1_000_000, 1_000_000), (0, 0), False,
                                                      collections.OrderedDict()))
    try:
        return pickle.dumps({"G_ema": Rebuild()}, protocol=2)
    except Exception:  # noqa: BLE001 - a torch without picklable storages: skip this stream
        return b""


_SAME_LENGTH = {"f4": ("M8", "m8", "V4", "U1", "O8", "i8", "c8", "b1"), "<": (">", "|", "=", "x"),
                "float32": ("float64", "int64xx"), "FloatStorage": ("ShortStorage", "ObjectStorag")}
"""Replacements of the same length for strings the fixtures' pickles hold (dtype codes, byte
orders, dtype and storage names), so that a framed pickle stays well framed."""


def _opcode_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One opcode argument of a pickle changed in place: a string (dtype code, byte order, global
    or key), or an integer (a shape, a stride, a tuple size, an offset), keeping the framing."""
    try:
        ops = [(op, arg, pos) for op, arg, pos in pickletools.genops(data) if arg is not None and pos is not None]
    except Exception:  # noqa: BLE001 - a stream pickletools cannot walk: fall back to a flip
        ops = []
    candidates = [(op, arg, pos) for op, arg, pos in ops if op.name in _STRING_OPS or op.name in _INT_OPS]
    if not candidates:
        return "opcode (none)", data
    op, arg, pos = rng.choice(candidates)
    buf = bytearray(data)
    if op.name in _INT_OPS:
        width, fmt = _INT_OPS[op.name]
        value = rng.choice([0, 1, -1, 2 ** 31 - 1, 3, 7, 4096, rng.randrange(2 ** 16)])
        lo, hi = {"<B": (0, 255), "<H": (0, 65535), "<i": (-2 ** 31, 2 ** 31 - 1)}[fmt]
        buf[pos + 1:pos + 1 + width] = struct.pack(fmt, min(max(value, lo), hi))
        return f"opcode {op.name}={value}", bytes(buf)
    text = arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
    new = rng.choice(_SAME_LENGTH.get(text, ())) if text in _SAME_LENGTH else \
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_. ") for _ in text)
    raw_old, raw_new = text.encode("utf-8"), new.encode("utf-8")
    start = data.find(raw_old, pos)
    if start < 0 or len(raw_new) != len(raw_old):
        return "opcode (skipped)", data
    buf[start:start + len(raw_old)] = raw_new
    return f"opcode {op.name} {text[:12]!r}->{new[:12]!r}", bytes(buf)


_STRING_OPS = ("SHORT_BINUNICODE", "BINUNICODE", "GLOBAL", "SHORT_BINSTRING", "BINSTRING", "UNICODE")
_INT_OPS = {"BININT1": (1, "<B"), "BININT2": (2, "<H"), "BININT": (4, "<i")}


def _zip_entry_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One entry of a torch zip file changed: its pickle (an opcode argument), a storage cut short
    or grown, or the byte order record; the archive rebuilt with the same entry names."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    name = rng.choice(list(entries))
    if name.endswith(".pkl"):
        kind, entries[name] = _opcode_mutation(entries[name], rng)
    elif "/data/" in name:
        content = entries[name]
        if rng.random() < 0.5:
            entries[name], kind = content[:rng.randrange(len(content) + 1)], "storage cut"
        else:
            entries[name], kind = content + bytes(rng.randrange(1, 4096)), "storage grown"
    else:
        entries[name], kind = rng.choice([b"big", b"", b"x" * 64]), "record"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for entry, content in entries.items():
            archive.writestr(entry, content)
    return f"zip entry {name.split('/', 1)[-1]}: {kind}", out.getvalue()


def structured_mutations(data: bytes, n: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """``n`` structure-aware mutations of ``data``: opcode arguments of a pickle, or the entries of
    a torch zip file (its pickle's opcodes, its storages, its records)."""
    is_zip = data[:2] == b"PK"
    for _ in range(n):
        yield _zip_entry_mutation(data, rng) if is_zip else _opcode_mutation(data, rng)


def mutations(data: bytes, n: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """``n`` mutated copies of ``data``: (kind, bytes)."""
    kinds = ("flip", "truncate", "insert", "zero", "swap")
    for _ in range(n):
        kind = rng.choice(kinds)
        buf = bytearray(data)
        size = len(buf)
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            buf = buf[: rng.randrange(size)]
        elif kind == "insert":
            at = rng.randrange(size)
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == "zero":
            at = rng.randrange(size)
            buf[at:at + rng.randint(1, 4096)] = b"\x00" * len(buf[at:at + rng.randint(1, 4096)])
        else:
            a, b = sorted(rng.sample(range(size), 2))
            width = min(rng.randint(1, 4096), b - a, size - b)
            buf[a:a + width], buf[b:b + width] = buf[b:b + width], buf[a:a + width]
        yield kind, bytes(buf)


def _probe(path: str, reference: torch.Tensor | None, connection) -> None:
    """In the child: load ``path`` and send back the outcome."""
    from cfexplain import load_generator
    from cfexplain.errors import CfexplainError

    torch.set_num_threads(1)
    try:
        generator = load_generator(path)
        with torch.no_grad():
            image = generator.synthesize(generator.sample(1, seed=0), space="z")
            drawn = [generator.synthesize(generator.sample(1, space="w", seed=seed, truncation=0.7), space="w",
                                          noise_mode="random", noise_seed=seed) for seed in range(1, 5)]
        same = reference is not None and image.shape == reference.shape and torch.allclose(image, reference, atol=1e-6)
        if not all(bool(torch.isfinite(faces).all()) for faces in drawn):
            connection.send(("silent NaN", "NaN faces for a truncated seed with random noise"))
        else:
            connection.send(("loaded, same images" if same else "loaded, changed images", ""))
    except CfexplainError as exc:
        connection.send(("clean error" if path in str(exc) else "unnamed error", f"{type(exc).__name__}: {exc}"[:300]))
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer is looking for
        connection.send(("raw error", f"{type(exc).__name__}: {exc}"[:300]))


def load_outcome(path: Path, reference: torch.Tensor | None, timeout: float) -> tuple[str, str]:
    """The outcome of loading ``path`` in a forked child within ``timeout`` seconds."""
    return outcome_in_child(_probe, (str(path), reference), timeout)


def outcome_in_child(probe, args: tuple, timeout: float) -> tuple[str, str]:
    """``probe(*args, connection)`` in a forked child, which sends back ``(outcome, detail)``:
    ``("hang", …)`` when no answer comes within ``timeout`` seconds, ``("crash", …)`` when the
    child dies without one."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=probe, args=(*args, send))
    child.start()
    send.close()
    ready = receive.poll(timeout)
    if not ready:
        child.kill()
        child.join()
        return "hang", f"no answer within {timeout:g} s"
    try:
        outcome = receive.recv()
    except EOFError:
        outcome = ("crash", f"the child died (exit code {child.exitcode})")
    child.join()
    return outcome


def peak_child_memory_mib() -> float:
    """The largest resident set of any finished child of this process, in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def references() -> dict[str, torch.Tensor]:
    """The probe image of each unmutated source."""
    from cfexplain import load_generator

    probes = {}
    with torch.no_grad():
        for name in SOURCES:
            generator = load_generator(FIXTURES / "stylegan2" / name)
            probes[name] = generator.synthesize(generator.sample(1, seed=0), space="z")
    return probes


FAMILIES = {"bytes": mutations, "structured": structured_mutations}
"""The mutation families: byte-level damage, and structure-aware changes (opcodes, zip entries)."""


def run(n_mutations: int, seed: int, timeout: float, folder: Path, progress: bool = False,
        family: str = "bytes", sources: tuple[str, ...] = SOURCES) -> list[dict]:
    """Outcome rows of ``n_mutations`` mutations of ``family`` (spread over ``sources``) and the
    hostile streams."""
    mutate = FAMILIES[family]
    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    rng, refs, rows = random.Random(seed), references(), []
    hostile = [(name, data) for name, data in hostile_streams() if data]
    shares = [n_mutations // len(sources) + (1 if i < n_mutations % len(sources) else 0) for i in range(len(sources))]

    def cases() -> Iterator[tuple[str, str, bytes]]:  # one mutated file in memory at a time
        yield from (("hostile", name, data) for name, data in hostile)
        for source, share in zip(sources, shares):
            data = (FIXTURES / "stylegan2" / source).read_bytes()
            yield from ((source, kind, mutated) for kind, mutated in mutate(data, share, rng))

    bar = tqdm(cases(), total=len(hostile) + n_mutations, desc="loading damaged files", unit="file",
               disable=not progress)
    for index, (source, kind, data) in enumerate(bar):
        path = folder / f"case-{index}{Path(source).suffix or '.pkl'}"
        path.write_bytes(data)
        outcome, detail = load_outcome(path, refs.get(source), timeout)
        rows.append({"source": source, "mutation": kind, "outcome": outcome, "detail": detail})
        path.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--family", choices=list(FAMILIES), default="bytes",
                        help="byte-level damage, or structure-aware changes (pickle opcodes, torch zip entries)")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES),
                        help="the fixtures to mutate (pickles: opcode mutations; the torch file: zip entries)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args.mutations, args.seed, args.timeout, Path(folder), progress=True, family=args.family,
                   sources=tuple(args.sources))
    counts = collections.Counter(row["outcome"] for row in rows)
    print(f"{len(rows)} files ({args.mutations} mutations + {len(rows) - args.mutations} hostile streams), "
          f"{time.perf_counter() - start:.0f} s")
    for outcome in OUTCOMES:
        print(f"  {outcome:<24} {counts.get(outcome, 0):>7}")
    peak = peak_child_memory_mib()
    print(f"peak memory of a child: {peak:.0f} MiB")
    for row in rows:
        if row["outcome"] in PROBLEMS:
            print(f"  ! {row['source']} {row['mutation']}: {row['outcome']}: {row['detail']}", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    name = "fuzz-loaders.json" if args.family == "bytes" else f"fuzz-loaders-{args.family}.json"
    if tuple(args.sources) != SOURCES:
        name = name.replace(".json", "-" + "+".join(Path(source).stem for source in args.sources) + ".json")
    by_source = {source: dict(collections.Counter(row["outcome"] for row in rows if row["source"] == source))
                 for source in ("hostile", *args.sources)}
    (RESULTS / name).write_text(json.dumps({
        "family": args.family, "sources": args.sources, "files": len(rows), "mutations": args.mutations,
        "seed": args.seed, "timeout_s": args.timeout, "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "counts_by_source": by_source, "peak_child_memory_mib": peak,
        "seconds": time.perf_counter() - start, "problems": [r for r in rows if r["outcome"] in PROBLEMS],
        "machine": platform.platform(), "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
