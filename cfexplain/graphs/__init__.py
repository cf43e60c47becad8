"""Static inference graphs as torch modules: the ONNX reader and the module converted graphs run in.

:func:`convert_onnx` turns an ONNX file into a :class:`GraphModule`, an ordinary differentiable
``nn.Module``; :func:`onnx_classifier_parts` adds what an image classifier needs (layout, input
size, the final softmax taken off, a check against an ONNX runtime) and is what
:meth:`cfexplain.Classifier.from_onnx` uses. The zoo's TFLite converter builds the same module.
"""

from .module import GraphModule, GraphNode
from .onnx_model import ConversionCheck, OnnxClassifierParts, onnx_classifier_parts, reference_runner
from .onnx_reader import SUPPORTED_OPERATORS, OnnxSignature, convert_onnx, load_onnx, signature

__all__ = [
    "SUPPORTED_OPERATORS",
    "ConversionCheck",
    "GraphModule",
    "GraphNode",
    "OnnxClassifierParts",
    "OnnxSignature",
    "convert_onnx",
    "load_onnx",
    "onnx_classifier_parts",
    "reference_runner",
    "signature",
]
