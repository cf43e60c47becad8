"""Hostile checkpoints: loading must refuse them (or ignore embedded code) with no side effect."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

import cfexplain
from cfexplain.errors import CorruptCheckpointError, UnsafeCheckpointError
from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator
from cfexplain.generators.checkpoints._safe_pickle import safe_load_pickle
from checkpoint_writers import (
    EasyDict,
    fake_nvidia_modules,
    nvlabs_init_kwargs,
    write_nvlabs_pickle,
    write_tf_pickle,
)


class Payload:
    """Pickles as a call of ``func(*args)``: what an attacker would plant."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def small_generator() -> StyleGAN2Generator:
    config = StyleGAN2Config.from_channel_base(16, channel_base=64, channel_max=16, z_dim=16, w_dim=16, mapping_layers=2)
    return StyleGAN2Generator(config, seed=1)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload in the checkpoint ran"


def dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


@pytest.mark.parametrize(
    "make_payload, global_name",
    [
        (lambda m: Payload(os.system, f"touch {m}"), "posix.system"),
        (lambda m: Payload(eval, f"open({str(m)!r}, 'w')"), "builtins.eval"),
        (lambda m: Payload(exec, f"open({str(m)!r}, 'w')"), "builtins.exec"),
        (lambda m: Payload(subprocess.check_call, ["touch", str(m)]), "subprocess.check_call"),
        (lambda m: Payload(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
        (lambda m: Payload(getattr, Payload(__import__, "os"), "system"), "builtins.getattr"),
        (lambda m: Payload(__import__, "os"), "builtins.__import__"),
    ],
)
def test_top_level_payload_is_refused(tmp_path, marker, make_payload, global_name):
    path = dump({"G_ema": make_payload(marker)}, tmp_path / "evil.pkl")
    with pytest.raises(UnsafeCheckpointError, match=global_name.replace(".", r"\.")):
        cfexplain.load_generator(path)


def test_payload_hidden_in_nested_state_is_refused(tmp_path, marker):
    generator = small_generator()
    kwargs = nvlabs_init_kwargs(generator, conv_clamp=None)
    kwargs["synthesis_kwargs"] = EasyDict(deep={"deeper": [1, 2, Payload(os.system, f"touch {marker}")]})
    path = write_nvlabs_pickle(generator, tmp_path / "nested.pkl", init_kwargs=kwargs)
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system"):
        cfexplain.load_generator(path)


def test_persistence_source_is_never_executed(tmp_path, marker):
    generator = small_generator()
    source = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\n"
    path = write_nvlabs_pickle(generator, tmp_path / "source.pkl", module_src=source)
    loaded = cfexplain.load_generator(path)
    codes = generator.sample(2, space="w+", seed=3)
    with torch.no_grad():
        assert torch.allclose(loaded.synthesize(codes), generator.synthesize(codes), atol=1e-5)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_payload_in_tensorflow_kwargs_is_refused(tmp_path, marker):
    generator = small_generator()
    kwargs = {"resolution": 16, "latent_size": 16, "dlatent_size": 16, "evil": Payload(os.system, f"touch {marker}")}
    path = write_tf_pickle(generator, tmp_path / "tf.pkl", static_kwargs=kwargs)
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system"):
        cfexplain.load_generator(path)


def test_malicious_nested_storage_blob_is_refused(tmp_path, marker):
    blob = pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2)
    with fake_nvidia_modules():
        from torch import storage

        path = dump({"G_ema": Payload(storage._load_from_bytes, blob)}, tmp_path / "blob.pkl")
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        cfexplain.load_generator(path)


def test_torch_file_with_payload_is_refused(tmp_path, marker):
    generator = small_generator()
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": generator.state_dict(), "extra": Payload(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafeCheckpointError):
        cfexplain.load_generator(path)


def test_persistent_id_is_refused(marker):
    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "pid" if obj == "x" else None

    buffer = io.BytesIO()
    WithPid(buffer, protocol=4).dump({"G_ema": "x"})
    buffer.seek(0)
    with pytest.raises(UnsafeCheckpointError, match="persistent id"):
        safe_load_pickle(buffer)


def test_numpy_object_arrays_are_refused(tmp_path):
    import numpy as np

    path = dump({"G_ema": np.array([1, 2], dtype=object)}, tmp_path / "objarray.pkl")
    with pytest.raises(UnsafeCheckpointError, match="object dtype"):
        cfexplain.load_generator(path)


def _numpy_pickle(value) -> bytes:
    return pickle.dumps(value, protocol=4)


@pytest.mark.parametrize("swap", [(b"f4", b"M8"), (b"f4", b"m8"), (b"f4", b"V4"), (b"f4", b"U1")])
def test_a_numpy_dtype_changed_to_a_non_numeric_one_is_refused_without_crashing(tmp_path, swap):
    """A datetime dtype given a float dtype's pickled state crashed the process inside numpy
    (SIGSEGV); the dtype is now checked, and numpy never sees the pickle's dtype state."""
    import numpy as np

    paths = []
    for number, value in enumerate((np.dtype("f4"), np.arange(3, dtype="f4"), np.float32(1.5))):
        paths.append(tmp_path / f"dtype{number}.pkl")
        paths[-1].write_bytes(_numpy_pickle(value).replace(*swap))
    probe = ("import sys\nfrom cfexplain.generators.checkpoints._safe_pickle import safe_load_pickle\n"
             "from cfexplain.errors import CfexplainError\n"
             f"for path in {[str(p) for p in paths]!r}:\n"
             "    try:\n        safe_load_pickle(open(path, 'rb'))\n        sys.exit(5)\n"
             "    except CfexplainError as e:\n        print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.count("refused") == 3 and "numeric" in done.stdout, (swap, done)


def test_numpy_values_in_a_pickle_are_checked_before_numpy_builds_them():
    import numpy as np

    array = np.arange(6, dtype=">f4").reshape(2, 3)
    loaded = safe_load_pickle(io.BytesIO(_numpy_pickle({"a": array, "s": np.float32(2.5)})))
    assert np.array_equal(np.asarray(loaded["a"]), array) and loaded["a"].dtype.kind == "f"
    assert loaded["s"] == np.float32(2.5)
    pickled = _numpy_pickle(np.arange(6, dtype="f4"))
    short = pickled.replace(b"K\x01K\x06\x85", b"K\x01K\x07\x85")  # shape (7,) on 6 values
    assert short != pickled
    with pytest.raises(CorruptCheckpointError, match="does not hold that many bytes"):
        safe_load_pickle(io.BytesIO(short))
    direct = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x05numpy\x8c\x07ndarray\x93J\x00\xe1\xf5\x05\x85R."
    with pytest.raises(UnsafeCheckpointError, match="numpy.ndarray directly"):
        safe_load_pickle(io.BytesIO(direct))


def _damaged_statistics(tmp_path, damage: str, value: float):
    generator = small_generator()
    with torch.no_grad():
        for name, tensor in [*generator.named_parameters(), *generator.named_buffers()]:
            if name.endswith(damage):
                tensor.fill_(value)
            elif damage == "noise_strength" and name.endswith("noise_const"):
                tensor.zero_()  # the stored noise is then harmless; fresh noise is not
    path = tmp_path / "damaged.pkl"
    write_nvlabs_pickle(generator, path)
    return path


@pytest.mark.parametrize("damage, value, words", [("mapping.w_avg", 3e38, "stored average w"),
                                                  ("mapping.w_avg", 1e4, "stored average w"),
                                                  ("noise_strength", 1e38, "noise strength of layer"),
                                                  ("noise_strength", 500.0, "noise strength of layer")])
def test_stored_statistics_out_of_range_are_refused_at_load(tmp_path, damage, value, words):
    """A huge but finite average latent or noise strength draws finite faces with constant noise
    and no truncation; its range is checked when the file loads, whether or not it makes NaN."""
    path = _damaged_statistics(tmp_path, damage, value)
    with pytest.raises(CorruptCheckpointError, match=f"damaged.pkl: .*{words}"):
        cfexplain.load_generator(path)


@pytest.mark.parametrize("damage, mode", [("mapping.w_avg", "truncation 0.7"), ("noise_strength", "random noise")])
def test_the_load_time_probe_draws_in_the_modes_users_use(tmp_path, monkeypatch, damage, mode):
    """Behind the range check, the probe itself draws truncated faces and random noise."""
    from cfexplain.generators.stylegan2 import StyleGAN2Generator

    monkeypatch.setattr(StyleGAN2Generator, "check_statistics", lambda self: None)
    path = _damaged_statistics(tmp_path, damage, 1e38 if damage == "noise_strength" else 3e38)
    with pytest.raises(CorruptCheckpointError, match=f"damaged.pkl: the generator draws NaN .*{mode}"):
        cfexplain.load_generator(path)
