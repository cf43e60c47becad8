"""ONNX classifiers: cfexplain's converter against onnxruntime, operator by operator and on whole
exported nets, the audit through a converted net against the same net's audit in PyTorch, and the
errors bad files get."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cfexplain.audit import audit
from cfexplain.classifiers import Classifier, OutputSpec, Preprocessing
from cfexplain.errors import (CheckpointNotFoundError, CorruptCheckpointError, InputError, ModelOutputError,
                              UnsupportedModelError)
from cfexplain.graphs import SUPPORTED_OPERATORS, convert_onnx
from synthetic import planted_rule_setting

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency: pip install '.[test]'")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _export(model: nn.Module, shape: tuple[int, ...], *, dynamic_batch: bool = True, keep_batch_norm: bool = False) -> bytes:
    options = {"dynamic_axes": {"x": {0: "n"}, "y": {0: "n"}}} if dynamic_batch else {}
    if keep_batch_norm:  # BatchNormalization nodes instead of weights folded into the convolutions
        options.update(do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that the TorchScript-based exporter is the legacy one
        torch.onnx.export(model.eval(), (torch.randn(*shape),), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=17, **options)
    return buffer.getvalue()


def _randomize_batch_norms(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
    return model


class ResidualNet(nn.Module):
    """Conv-BN-ReLU with a residual block, max pooling, a `view(size(0), -1)` flattening (the
    Shape/Gather/Concat chain) and a softmax output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8 * 4 * 4, 2)
        _randomize_batch_norms(self, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = F.relu(y + self.block(y))
        y = F.max_pool2d(y, 4)
        return self.head(y.view(y.size(0), -1)).softmax(dim=1)


class MobileNet(nn.Module):
    """A MobileNetV3-style net: strided conv + hardswish, depthwise 3×3 with ReLU6, a squeeze-and-
    excitation gate (hardsigmoid), dilation, padded average pooling, global pooling, logits out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16), nn.ReLU6())
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 16, 1),
                                     nn.Hardsigmoid())
        self.pointwise = nn.Sequential(nn.Conv2d(16, 24, 1), nn.LeakyReLU(0.1))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 3))
        _randomize_batch_norms(self, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.stem(x))
        y = self.pointwise(y * self.squeeze(y))
        return self.head(self.pool(y))


class KerasStyleNet(nn.Module):
    """A TensorFlow/Keras-style export: NHWC input in 0–255, a Transpose to NCHW, a reflect pad,
    PReLU, a transposed convolution, bilinear and nearest upsampling, and a softmax output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 6, 3)
        self.prelu = nn.PReLU(6, init=0.2)
        self.down = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Linear(4 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.permute(0, 3, 1, 2) - 127.5) / 127.5
        y = self.prelu(self.conv(F.pad(y, [1, 1, 1, 1], mode="reflect")))
        y = self.up(torch.tanh(self.down(y)))
        y = F.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False)
        y = F.interpolate(y, scale_factor=2.0, mode="nearest")
        y = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
        return torch.softmax(self.head(y), dim=-1)


class SigmoidHeads(nn.Module):
    """Two independent heads with a final sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Conv2d(3, 4, 5, stride=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(torch.sigmoid(self.conv(x)).mean(dim=(2, 3))))


# (model, input shape, export options, preprocessing, output spec, the layout cfexplain should read)
NETS = {
    "residual_bn": (ResidualNet, (1, 3, 16, 16), {"keep_batch_norm": True},
                    Preprocessing(value_range=(0, 1), mean=(0.5,), std=(0.25,)), OutputSpec.softmax(["a", "b"]), "NCHW"),
    "residual_folded_batch_of_one": (ResidualNet, (1, 3, 16, 16), {"dynamic_batch": False},
                                     Preprocessing(value_range=(0, 1)), OutputSpec.softmax(["a", "b"]), "NCHW"),
    "mobilenet": (MobileNet, (1, 3, 24, 24), {}, Preprocessing(value_range=(0, 1), mean=(0.485, 0.456, 0.406),
                                                                 std=(0.229, 0.224, 0.225)),
                  OutputSpec.softmax(["x", "y", "z"]), "NCHW"),
    "keras_nhwc_0_255": (KerasStyleNet, (1, 16, 16, 3), {}, Preprocessing(value_range=(0, 255)),
                         OutputSpec.softmax(["no", "yes"]), "NHWC"),
    "sigmoid_heads": (SigmoidHeads, (1, 3, 16, 16), {}, Preprocessing(value_range=(-1, 1)),
                      OutputSpec.sigmoid(["smile", "glasses"]), "NCHW"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    files = {}
    for name, (make, shape, options, *_rest) in NETS.items():
        model = make().eval()
        path = folder / f"{name}.onnx"
        path.write_bytes(_export(model, shape, **options))
        files[name] = (model, path)
    return files


def _torch_classifier(name: str, model: nn.Module) -> Classifier:
    _make, shape, _options, preprocessing, output, layout = NETS[name]
    size = shape[2:] if layout == "NCHW" else shape[1:3]
    module = model if layout == "NCHW" else _Channels_last(model)
    scores = "logits" if name == "mobilenet" else "probabilities"
    spec = OutputSpec(output.kind, output.labels, scores)
    return Classifier(module, preprocessing=Preprocessing(**{**preprocessing.__dict__, "size": tuple(size)}),
                      output=spec, name=f"{name} (torch)")


class _Channels_last(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 2, 3, 1))


@pytest.mark.parametrize("name", list(NETS))
def test_exported_nets_equal_onnxruntime_and_torch(exported, name):
    model, path = exported[name]
    _make, shape, _options, preprocessing, output, layout = NETS[name]
    classifier = Classifier.from_onnx(path, output=output, preprocessing=preprocessing)
    check = classifier.conversion_check
    assert check.reference.startswith("onnxruntime") and check.max_difference <= check.allowed
    size = shape[2:] if layout == "NCHW" else shape[1:3]
    assert classifier.preprocessing.size == tuple(size)  # read from the graph
    images = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(11)) * 2 - 1
    x = classifier.preprocessing(images)
    feed = (x.permute(0, 2, 3, 1) if layout == "NHWC" else x).numpy()
    session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    runtime = np.concatenate([session.run(None, {"x": feed[i:i + 1]})[0] for i in range(3)])
    if name == "mobilenet":  # a logits graph
        runtime = torch.from_numpy(runtime).softmax(dim=1).numpy()
    ours = classifier.probabilities(images).detach().numpy()
    np.testing.assert_allclose(ours, runtime, atol=2e-6)
    np.testing.assert_allclose(ours, _torch_classifier(name, model).probabilities(images).detach().numpy(), atol=2e-6)
    if output.kind == "softmax" and name != "mobilenet":  # the final softmax is taken off: exact logits
        assert classifier.output.scores == "logits"
        logits = classifier.logits(images)
        assert torch.allclose(logits.softmax(dim=1), torch.from_numpy(runtime), atol=2e-6)
    # differentiable: a gradient reaches the images
    images.requires_grad_(True)
    classifier.logits(images)[:, 0].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


DYNAMO_EXPORTS = Path(__file__).parent / "fixtures" / "onnx"


@pytest.mark.parametrize("name", [n for n in NETS if n != "residual_folded_batch_of_one"])
def test_nets_from_torchs_dynamo_exporter_equal_onnxruntime(name):
    """The same nets as torch.onnx.export(dynamo=True) writes them (torch's default exporter since
    2.9; committed by tools/export_dynamo_onnx.py, since it needs onnxscript)."""
    path = DYNAMO_EXPORTS / f"dynamo_{name}.onnx"
    _make, shape, _options, preprocessing, output, layout = NETS[name]
    classifier = Classifier.from_onnx(path, output=output, preprocessing=preprocessing)
    assert classifier.conversion_check.max_difference <= classifier.conversion_check.allowed
    size = shape[2:] if layout == "NCHW" else shape[1:3]
    assert classifier.preprocessing.size == tuple(size)
    images = (torch.rand(5, 3, *size, generator=torch.Generator().manual_seed(3)) * 2 - 1).requires_grad_(True)
    x = classifier.preprocessing(images.detach())
    feed = (x.permute(0, 2, 3, 1) if layout == "NHWC" else x).numpy()
    runtime = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"]).run(None, {"x": feed})[0]
    if name == "mobilenet":
        runtime = torch.from_numpy(runtime).softmax(dim=1).numpy()
    np.testing.assert_allclose(classifier.probabilities(images).detach().numpy(), runtime, atol=2e-6)
    classifier.logits(images)[:, 0].sum().backward()  # one batch of five: the batch is dynamic, and gradients flow
    assert images.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def setting():
    return planted_rule_setting()


@pytest.mark.parametrize("name", list(NETS))
def test_an_audit_through_the_onnx_file_equals_the_audit_in_torch(exported, setting, name):
    generator, _planted, subspaces, semantics = setting
    model, path = exported[name]
    _make, _shape, _options, preprocessing, output, _layout = NETS[name]
    target = ("smile", "flip") if output.kind == "sigmoid" else "flip"
    options = dict(faces=3, seed=2, unit="latent", budget=4.0, semantics=semantics, joint=False, controls=0,
                   progress=False, target=target)
    through_onnx = audit(generator, Classifier.from_onnx(path, output=output, preprocessing=preprocessing),
                         subspaces, **options).to_dataframe().set_index("semantic")
    in_torch = audit(generator, _torch_classifier(name, model), subspaces, **options).to_dataframe().set_index("semantic")
    assert list(through_onnx.index) == list(in_torch.index)
    assert (through_onnx["flip_rate"] == in_torch["flip_rate"]).all()
    numeric = [c for c in in_torch.columns if in_torch[c].dtype.kind == "f"]
    np.testing.assert_allclose(through_onnx[numeric].to_numpy(float), in_torch[numeric].to_numpy(float),
                               rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# operator by operator, on graphs written with onnx.helper


def _graph(nodes, *, initializers=(), opset=17, input_shape=(2, 3, 8, 8), output_shape=None, extra_inputs=()):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape)), *extra_inputs]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)  # the output's shape, which the checker wants


def _weights(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


I64 = np.int64
OPERATOR_CASES = {
    "conv_same_upper_strided": ([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                                {"w": _weights(4, 3, 4, 4)}, 17),
    "conv_same_lower_grouped": ([helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_LOWER", group=3)],
                                {"w": _weights(6, 1, 2, 2), "b": _weights(6)}, 17),
    "conv_asymmetric_pads": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 2, 1])],
                             {"w": _weights(2, 3, 3, 3)}, 17),
    "conv_transpose": ([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 0, 1, 1],
                                         output_padding=[1, 1])], {"w": _weights(3, 2, 3, 3), "b": _weights(2)}, 17),
    "max_pool_same_dilated": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                                auto_pad="SAME_UPPER")], {}, 17),
    "max_pool_ceil": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], {}, 17),
    "average_pool_include_pad": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                                   count_include_pad=1)], {}, 17),
    "average_pool_uneven_pads": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                                                   pads=[1, 0, 0, 1])], {}, 17),
    "global_max_pool": ([helper.make_node("GlobalMaxPool", ["x"], ["y"])], {}, 17),
    "batch_norm": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                   {"s": _weights(3), "b": _weights(3, seed=1), "m": _weights(3, seed=2),
                    "v": np.abs(_weights(3, seed=3)) + 0.1}, 17),
    "prelu_per_channel": ([helper.make_node("PRelu", ["x", "s"], ["y"])], {"s": _weights(3, 1, 1)}, 17),
    "leaky_relu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.3)], {}, 17),
    "clip_opset_11_inputs": ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
                             {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, 13),
    "clip_opset_6_attributes": ([helper.make_node("Clip", ["x"], ["y"], min=-0.2, max=0.3)], {}, 6),
    "hard_sigmoid_hard_swish": ([helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.3, beta=0.4),
                                 helper.make_node("HardSwish", ["h"], ["y"])], {}, 17),
    "arithmetic_broadcasting": ([helper.make_node("Sub", ["x", "a"], ["s"]), helper.make_node("Div", ["s", "b"], ["d"]),
                                 helper.make_node("Pow", ["d", "p"], ["q"]), helper.make_node("Sqrt", ["q"], ["r"]),
                                 helper.make_node("Exp", ["r"], ["e"]), helper.make_node("Neg", ["e"], ["n"]),
                                 helper.make_node("Erf", ["n"], ["y"])],
                                {"a": _weights(3, 1, 1), "b": np.abs(_weights(1, 8)) + 1, "p": np.array(2.0, np.float32)}, 17),
    "softmax_opset_11_flattens": ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, 11),
    "log_softmax_axis_1": ([helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)], {}, 17),
    "reduce_mean_opset_18_axes_input": ([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                                        {"axes": np.array([1, 3], I64)}, 18),
    "reduce_sum_max": ([helper.make_node("ReduceSum", ["x", "axes"], ["s"]),
                        helper.make_node("ReduceMax", ["s"], ["y"], axes=[2], keepdims=1)],
                       {"axes": np.array([-1], I64)}, 17),
    "resize_linear_half_pixel": ([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
                                 {"scales": np.array([1, 1, 1.5, 0.75], np.float32)}, 17),
    "resize_linear_align_corners_sizes": ([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                                                            coordinate_transformation_mode="align_corners")],
                                          {"sizes": np.array([2, 3, 5, 11], I64)}, 17),
    "resize_nearest_default": ([helper.make_node("Resize", ["x", "", "scales"], ["y"])],
                               {"scales": np.array([1, 1, 1.7, 2.5], np.float32)}, 17),
    "resize_nearest_asymmetric_floor": ([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                                                          coordinate_transformation_mode="asymmetric",
                                                          nearest_mode="floor")],
                                        {"scales": np.array([1, 1, 2, 2], np.float32)}, 17),
    "pad_edge_and_constant": ([helper.make_node("Pad", ["x", "p"], ["e"], mode="edge"),
                               helper.make_node("Pad", ["e", "q", "v"], ["y"])],
                              {"p": np.array([0, 0, 1, 2, 0, 0, 2, 0], I64), "q": np.array([0, 0, 0, 1, 0, 0, 1, 0], I64),
                               "v": np.array(0.5, np.float32)}, 17),
    "shape_chain_slice_squeeze": ([
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["sliced"]),
        helper.make_node("Reshape", ["sliced", "target"], ["flat"]),
        helper.make_node("Unsqueeze", ["flat", "axis0"], ["u"]),
        helper.make_node("Squeeze", ["u", "axis0"], ["y"])],
        {"zero": np.array(0, I64), "axis0": np.array([0], I64), "minus_one": np.array([-1], I64),
         "starts": np.array([1, 0], I64), "ends": np.array([3, 100], I64), "axes": np.array([2, 3], I64),
         "steps": np.array([1, 2], I64)}, 17),
    "gemm_transposes_alpha_beta_matmul": ([helper.make_node("Flatten", ["x"], ["f"], axis=2),
                                           helper.make_node("MatMul", ["f", "m"], ["g"]),
                                           helper.make_node("Gemm", ["g", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                                          {"m": _weights(64, 5), "w": _weights(4, 5), "c": _weights(4)}, 17),
    "cast_expand_constant_of_shape": ([
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])),
        helper.make_node("Cast", ["ones"], ["twos"], to=TensorProto.INT64),
        helper.make_node("Cast", ["twos"], ["back"], to=TensorProto.FLOAT),
        helper.make_node("Expand", ["c", "shape"], ["big"]),
        helper.make_node("Constant", [], ["k"], value_float=0.25),
        helper.make_node("Mul", ["big", "k"], ["quarter"]),
        helper.make_node("Add", ["quarter", "back"], ["sum"]),
        helper.make_node("Mul", ["sum", "x"], ["y"])], {"c": _weights(3, 1, 1)}, 17),
    "transpose_identity_dropout_tanh_sigmoid": ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                                                 helper.make_node("Identity", ["t"], ["i"]),
                                                 helper.make_node("Dropout", ["i"], ["d"]),
                                                 helper.make_node("Tanh", ["d"], ["h"]),
                                                 helper.make_node("Sigmoid", ["h"], ["y"])], {}, 17),
    "normalisations": ([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["i"], epsilon=1e-3),
                        helper.make_node("LayerNormalization", ["i", "g", "h"], ["y"], axis=-2)],
                       {"s": _weights(3), "b": _weights(3, seed=1), "g": _weights(8, 8, seed=2),
                        "h": _weights(8, 8, seed=3)}, 17),
    "activations_elu_selu_softplus_gelu": ([helper.make_node("Elu", ["x"], ["e"], alpha=0.7),
                                            helper.make_node("Selu", ["e"], ["s"]),
                                            helper.make_node("Softplus", ["s"], ["p"]),
                                            helper.make_node("Gelu", ["p"], ["y"], approximate="tanh")], {}, 20),
    "variadic_and_unary": ([helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Log", ["a"], ["l"]),
                            helper.make_node("Reciprocal", ["a"], ["r"]), helper.make_node("Max", ["x", "l", "c"], ["m"]),
                            helper.make_node("Min", ["m", "r"], ["n"]), helper.make_node("Sum", ["n", "x", "c"], ["t"]),
                            helper.make_node("Mean", ["t", "m"], ["y"])], {"c": _weights(3, 1, 1)}, 17),
    "where_and_comparisons": ([helper.make_node("Greater", ["x", "c"], ["g"]), helper.make_node("Less", ["x", "d"], ["l"]),
                               helper.make_node("Equal", ["g", "l"], ["e"]), helper.make_node("Neg", ["x"], ["n"]),
                               helper.make_node("Where", ["e", "x", "n"], ["y"])],
                              {"c": np.array(0.2, np.float32), "d": np.array(-0.3, np.float32)}, 17),
    "upsample_opset_9": ([helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")],
                         {"scales": np.array([1, 1, 2, 3], np.float32)}, 9),
}


@pytest.mark.parametrize("case", list(OPERATOR_CASES))
def test_each_operator_equals_onnxruntime(case):
    nodes, initializers, opset = OPERATOR_CASES[case]
    model = _graph(nodes, initializers=initializers, opset=opset)
    onnx.checker.check_model(model)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    ours = convert_onnx(model.SerializeToString())(torch.from_numpy(x))
    assert tuple(ours.shape) == expected.shape
    np.testing.assert_allclose(ours.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_every_supported_operator_is_exercised():
    used = {node.op_type for nodes, _, _ in OPERATOR_CASES.values() for node in nodes}
    from_exports = {"Conv", "Relu", "Add", "Gemm", "Softmax", "Concat", "AveragePool", "GlobalAveragePool"}
    assert set(SUPPORTED_OPERATORS) <= used | from_exports, set(SUPPORTED_OPERATORS) - used - from_exports


# ---------------------------------------------------------------------------------------------
# bad files and declarations get clear errors


def _save(tmp_path, model, name="model.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString() if hasattr(model, "SerializeToString") else model)
    return path


def _tiny(opset=17, input_shape=(None, 3, 8, 8), classes=2, extra_nodes=()):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"]), *extra_nodes]
    shape = ["n" if d is None else d for d in input_shape]
    channels = input_shape[1] if input_shape[1] in (3, 4) else 3
    model = _graph(nodes, initializers={"w": _weights(channels, classes)}, opset=opset, input_shape=shape)
    return model


def test_bad_onnx_files_and_declarations_are_refused_clearly(tmp_path):
    spec = OutputSpec.softmax(["a", "b"])
    with pytest.raises(CheckpointNotFoundError, match="no ONNX file"):
        Classifier.from_onnx(tmp_path / "missing.onnx", output=spec)
    with pytest.raises(CorruptCheckpointError, match="not a readable ONNX model|not an ONNX model"):
        Classifier.from_onnx(_save(tmp_path, b"this is not a protobuf at all \xff\xfe"), output=spec)
    with pytest.raises(CorruptCheckpointError, match="no graph"):
        Classifier.from_onnx(_save(tmp_path, b""), output=spec)
    good = _tiny().SerializeToString()
    with pytest.raises(CorruptCheckpointError):
        Classifier.from_onnx(_save(tmp_path, good[:len(good) // 2]), output=spec)  # truncated
    # two inputs
    two = _tiny()
    two.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1]))
    with pytest.raises(UnsupportedModelError, match="2 inputs.*'x', 'mask'"):
        Classifier.from_onnx(_save(tmp_path, two), output=spec)
    # an operator the converter lacks is named, with the supported list
    lrn = _graph([helper.make_node("LRN", ["x"], ["l"], size=3), helper.make_node("GlobalAveragePool", ["l"], ["p"]),
                  helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"])],
                 initializers={"w": _weights(3, 2)}, input_shape=["n", 3, 8, 8])
    with pytest.raises(UnsupportedModelError, match="cannot read: LRN.*Supported: .*Conv"):
        Classifier.from_onnx(_save(tmp_path, lrn), output=spec)
    # a dynamic image size needs the size; then it is used
    dynamic = _save(tmp_path, _tiny(input_shape=(None, 3, None, None)))
    with pytest.raises(InputError, match="size is dynamic.*preprocessing size"):
        Classifier.from_onnx(dynamic, output=spec)
    assert Classifier.from_onnx(dynamic, output=spec, preprocessing=Preprocessing(size=12)).preprocessing.size == 12
    with pytest.raises(InputError, match="does not match the ONNX graph's input"):
        Classifier.from_onnx(_save(tmp_path, _tiny()), output=spec, preprocessing=Preprocessing(size=10))
    # layout: ambiguous shapes need it said; anything but 3 channels is refused
    ambiguous = _save(tmp_path, _tiny(input_shape=(None, 3, 8, 3)))
    with pytest.raises(InputError, match="cannot tell the layout.*layout="):
        Classifier.from_onnx(ambiguous, output=spec)
    assert Classifier.from_onnx(ambiguous, output=spec, layout="NCHW").preprocessing.size == (8, 3)
    with pytest.raises(UnsupportedModelError, match="4-channel"):
        Classifier.from_onnx(_save(tmp_path, _tiny(input_shape=(None, 4, 8, 8))), output=spec, layout="NCHW")
    with pytest.raises(UnsupportedModelError, match="batch size is fixed at 4"):
        Classifier.from_onnx(_save(tmp_path, _tiny(input_shape=(4, 3, 8, 8))), output=spec)
    # outputs that do not match the labels
    with pytest.raises(ModelOutputError, match=r"expected \(N, 2\)"):
        Classifier.from_onnx(_save(tmp_path, _tiny(classes=5)), output=spec)
    # several outputs: say which
    several = _tiny()
    several.graph.node.append(helper.make_node("Identity", ["f"], ["features"]))
    several.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3]))
    path = _save(tmp_path, several)
    with pytest.raises(InputError, match="2 outputs.*output_name="):
        Classifier.from_onnx(path, output=spec)
    assert Classifier.from_onnx(path, output=spec, output_name="y").num_outputs == 2
    # NaN out
    nan = _tiny(extra_nodes=())
    nan.graph.node[-1].output[0] = "g"
    nan.graph.node.append(helper.make_node("Div", ["g", "zero"], ["y"]))
    nan.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
    with pytest.raises(ModelOutputError, match="NaN"):
        Classifier.from_onnx(_save(tmp_path, nan), output=spec)


def test_the_check_refuses_a_conversion_that_differs_from_the_runtime(tmp_path, monkeypatch):
    from cfexplain.graphs import ops

    path = _save(tmp_path, _tiny())
    monkeypatch.setitem(ops.OPS, "global_avg_pool", lambda x: x.amax(dim=(2, 3), keepdim=True))  # a wrong conversion
    with pytest.raises(UnsupportedModelError, match="differs from onnxruntime"):
        Classifier.from_onnx(path, output=OutputSpec.softmax(["a", "b"]))


def test_without_onnxruntime_the_check_uses_the_onnx_reference_evaluator(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    classifier = Classifier.from_onnx(_save(tmp_path, _tiny()), output=OutputSpec.softmax(["a", "b"]))
    assert "reference evaluator" in classifier.conversion_check.reference
    assert classifier.conversion_check.max_difference <= classifier.conversion_check.allowed


def test_external_weights_half_precision_and_uint8_inputs(tmp_path):
    """Weights in a file of their own, a float16 graph (run in float32, checked within the
    tolerance), and a graph taking uint8 pixels (cast inside), also queried as a black box."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 2))
    torch.manual_seed(0)
    model = onnx.load_from_string(_export(net, (1, 3, 32, 32)))
    spec = OutputSpec.softmax(["a", "b"])
    onnx.save(onnx.load_from_string(model.SerializeToString()), str(tmp_path / "external.onnx"),  # a copy: the
              save_as_external_data=True, location="external.data", size_threshold=0)  # save moves its weights out
    assert (tmp_path / "external.data").is_file()
    assert Classifier.from_onnx(tmp_path / "external.onnx", output=spec).conversion_check.max_difference < 1e-6
    (tmp_path / "external.data").unlink()
    with pytest.raises(CorruptCheckpointError, match="not a readable ONNX model"):
        Classifier.from_onnx(tmp_path / "external.onnx", output=spec)
    half = onnx.load_from_string(model.SerializeToString())
    for initializer in half.graph.initializer:
        initializer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16),
                                                     initializer.name))
    half.graph.input[0].type.tensor_type.elem_type = half.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    check = Classifier.from_onnx(_save(tmp_path, half, "half.onnx"), output=spec).conversion_check
    assert 0 < check.max_difference <= check.allowed  # float16 rounding, within the tolerance
    graph = model.graph
    for node in graph.node:
        node.input[:] = ["scaled" if name == "x" else name for name in node.input]
    cast = [helper.make_node("Cast", ["x"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("Constant", [], ["full"], value_float=255.0),
            helper.make_node("Div", ["pixels", "full"], ["scaled"])]
    pixels = helper.make_model(helper.make_graph(
        cast + list(graph.node), "uint8", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 3, 32, 32])],
        list(graph.output), list(graph.initializer)), opset_imports=model.opset_import)
    path = _save(tmp_path, pixels, "uint8.onnx")
    converted = Classifier.from_onnx(path, output=spec, preprocessing=Preprocessing(value_range=(0, 255)))
    queried = Classifier.from_onnx(path, output=spec, preprocessing=Preprocessing(value_range=(0, 255)), black_box=True)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    assert converted.differentiable and not queried.differentiable
    torch.testing.assert_close(queried.probabilities(images), converted.probabilities(images), atol=1e-4, rtol=1e-3)
