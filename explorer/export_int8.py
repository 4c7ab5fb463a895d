"""The int8 ONNX file of an exported network (explorer.export): every convolution an integer
one (QLinearConv) in ONNX Runtime; docs/deploy.md has the measurements behind each rule.

1. The float32 graph is folded (ONNX Runtime's quantisation pre-processing: the
   kernels' layout transposes become constants) and each 3x3/2 max-pool, which jax2onnx
   writes as strided Slices and Maxima of a -inf padded tensor with their shape
   arithmetic (some 60 nodes), becomes one MaxPool node; the two graphs' logits must be
   equal on calibration images.
2. `quantize_static` in operator format (QLinearConv nodes, not QDQ pairs: half the
   graph's own bytes): every convolution's weights per output channel, symmetric,
   max|w| / 127 (the weights of a row's `int8_accuracy`); activations uint8, min-max over
   the calibration images; max-pools on uint8. The first convolution's weights are stored
   as uint8 with zero point 128, the same values: its input is pixels over the whole
   0-255 range, and ONNX Runtime's uint8 x int8 kernel on x86 without VNNI sums pairs of
   products in int16 with saturation (VPMADDUBSW), which those pixels with the large 3x3
   weights overflow (5 points lost on SqueezeNet 1.1); uint8 x uint8 has no such pairs.
3. A fire's concatenation takes its expand convolutions' uint8 outputs as they are
   (`_concat_uint8`), and what the quantiser stores twice or need not store is cut
   (`_slim`, which changes nothing the graph computes).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from explorer.console import first_line
from explorer.export import ExportError, session

INT8_OPS = ["Conv", "Relu", "MaxPool"]  # quantised (a MaxPool of uint8 keeps its scale)
POOL = (3, 2)  # the network's max-pools: 3x3 windows, stride 2 (lowering.max_pool_ceil)
# The float file's metadata the int8 file leaves out: its doc string says what `input` and
# `output` say, and the recipe the network was trained with is the float file's.
UNCOPIED = ("input", "output", "recipe")
CHECKED = 64  # calibration images on which the MaxPool graph's logits must equal the folded one's


def quantize_int8(src: str | os.PathLike, out: str | os.PathLike, images: np.ndarray) -> Path:
    """The int8 copy of an exported float32 graph `src`, calibrated on `images` (uint8 NHWC
    training images), written to `out`. ExportError when nothing can be quantised."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(src), Path(out)
    inp = session(src).get_inputs()[0]
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    batches = [{inp.name: images[i : i + 64].astype(dtype)} for i in range(0, len(images), 64)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        folded, pooled, quantised = (Path(tmp) / f"{n}.onnx" for n in ("fold", "pool", "int8"))
        root, level = logging.getLogger(), logging.getLogger().level
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                root.setLevel(logging.ERROR)  # the tool logs advice at WARNING
                quant_pre_process(str(src), str(folded))
                proto = onnx.load(str(folded))
                if _maxpools(proto):
                    onnx.save(proto, str(pooled))
                    _same_logits(folded, pooled, images[:CHECKED].astype(dtype))
                    folded = pooled
                quantize_static(
                    str(folded), str(quantised), Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OPS,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                   "TensorQuantOverrides": _first_conv_uint8(proto)},
                )  # fmt: skip
            proto = onnx.load(str(quantised))
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"{src}: cannot be quantised to int8 ({first_line(e)})") from None
        finally:
            root.setLevel(level)
        if not any(n.op_type == "QLinearConv" for n in proto.graph.node):
            raise ExportError(f"{src}: nothing in the graph could be quantised to int8")
        _concat_uint8(proto)
        _slim(proto)
        del proto.metadata_props[:]
        for p in onnx.load(str(src), load_external_data=False).metadata_props:
            if p.key not in UNCOPIED:
                proto.metadata_props.add(key=p.key, value=_compact(p.value))
        proto.metadata_props.add(key="int8", value=_compact(json.dumps({
            "weights": "int8 per output channel, symmetric (conv1: uint8, zero point 128)",
            "activations": "uint8, min-max",
            "calibration_images": int(len(images)),
        })))  # fmt: skip
        onnx.save(proto, str(quantised))
        os.replace(quantised, out)
    return out


def _compact(text: str) -> str:
    """JSON text without its optional spaces (other text as it is)."""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return text


def _same_logits(a: Path, b: Path, images: np.ndarray) -> None:
    """ExportError unless the two graphs' outputs on these images are equal."""
    sa, sb = session(a), session(b)
    feed = {sa.get_inputs()[0].name: images}
    if not np.array_equal(sa.run(None, feed)[0], sb.run(None, feed)[0]):
        raise ExportError(f"{a}: its max-pools as MaxPool nodes change its logits")


def _first_conv_uint8(proto) -> dict:
    """quantize_static's overrides storing the first convolution's weights as uint8: per
    output channel, zero point 128, scale max|w| / 127 (1 for a channel of zeros)."""
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType

    init = {t.name: t for t in proto.graph.initializer}
    conv = next((n for n in proto.graph.node if n.op_type == "Conv"), None)
    if conv is None or len(conv.input) < 2 or conv.input[1] not in init:
        return {}
    w = numpy_helper.to_array(init[conv.input[1]])
    amax = np.abs(w).reshape(len(w), -1).max(axis=1).astype(np.float32)
    scales = np.where(amax == 0, np.float32(1), amax / np.float32(127))
    per = [{"quant_type": QuantType.QUInt8, "scale": np.asarray(s, np.float32),
            "zero_point": np.asarray(128, np.uint8)} for s in scales]  # fmt: skip
    per[0]["axis"] = 0
    return {conv.input[1]: per}


def _maxpools(proto) -> int:
    """Replace each max-pool subgraph of jax2onnx (strided Slices of a tensor, or of its
    -inf Pad at the bottom/right, Maxima of them, and the Shape/Gather/Concat arithmetic of
    the slices' limits) by one MaxPool node with that padding; returns how many."""
    from onnx import helper, numpy_helper

    g = proto.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    users = _users(g)
    outs = {o.name for o in g.output}
    pads = {}  # a -inf Pad's output: (the Pad, its bottom and right padding)
    for n in g.node:
        if n.op_type == "Pad" and len(n.input) == 3 and all(x in init for x in n.input[1:]):
            p = init[n.input[1]].tolist()
            if init[n.input[2]].item() == -np.inf and len(p) == 8 and not any(p[:6]):
                pads[n.output[0]] = n, p[6:]
    drop, put = set(), {}
    for n in g.node:
        for x in [] if id(n) in drop else n.output:
            inside = _pool_nodes(x, users)
            made = {o for u in inside.values() for o in u.output}
            leaving = {o for o in made if o in outs or any(id(v) not in inside for v in users[o])}
            if not inside or len(leaving) != 1 or x in outs:
                continue
            source, end = x, [0, 0]
            if x in pads:
                pad, end = pads[x]
                source = pad.input[0]
                drop.add(id(pad))
            k, s = POOL
            pool = {"pads": [0, 0, *end]} if any(end) else {}
            node = helper.make_node(
                "MaxPool", [source], list(leaving), kernel_shape=[k, k], strides=[s, s], **pool
            )
            drop.update(inside)
            put[next(iter(inside))] = node
    nodes = [put.get(id(n), n) for n in g.node if id(n) not in drop or id(n) in put]
    del g.node[:]
    g.node.extend(nodes)
    _drop_unused(g)
    return len(put)


_DATA = {("Shape", False), ("Max", False), ("Slice", True)}  # (op, takes data as its input 0)
_SHAPES = {("Gather", False), ("Concat", False), ("Slice", False)}


def _pool_nodes(x: str, users: dict) -> dict:
    """The nodes of a pool of tensor x (by id): from x's slices on, through data (Slice,
    Max outputs) and the slices' shape arithmetic; empty unless all of x's users are."""
    if not any(u.op_type == "Slice" and u.input[0] == x for u in users.get(x, [])):
        return {}
    inside, todo = {}, [(x, True)]
    while todo:
        name, data = todo.pop()
        for u in users.get(name, []):
            kind = u.op_type, u.op_type == "Slice" and u.input[0] == name
            if id(u) not in inside and kind in (_DATA if data else _SHAPES):
                inside[id(u)] = u
                todo.extend((o, u.op_type in ("Slice", "Max")) for o in u.output)
    return inside if all(id(u) in inside for u in users[x]) else {}


def _concat_uint8(proto) -> int:
    """Concatenate the expand convolutions' uint8 outputs as they are: a Concat of
    DequantizeLinear outputs whose result feeds one QuantizeLinear only takes the uint8
    tensors, and the QLinearConvs that make them (through uint8 MaxPools) write at the
    concatenation's scale and zero point: one rounding where there were two, in a range
    that holds both (the concatenation's). Returns how many."""
    g = proto.graph
    made = {o: n for n in g.node for o in n.output}
    users = _users(g)
    gone, done = set(), 0
    for cat in [n for n in g.node if n.op_type == "Concat"]:
        dqs, after = [made.get(x) for x in cat.input], users[cat.output[0]]
        if len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        convs = [_uint8_source(dq, made, users) for dq in dqs]
        if not convs or None in convs:
            continue
        q = after[0]
        for conv in convs:
            conv.input[6], conv.input[7] = q.input[1], q.input[2]
        cat.input[:] = [dq.input[0] for dq in dqs]
        for n in users[q.output[0]]:
            n.input[:] = [cat.output[0] if x == q.output[0] else x for x in n.input]
        gone.update(id(n) for n in (*dqs, q))
        done += 1
    nodes = [n for n in g.node if id(n) not in gone]
    del g.node[:]
    g.node.extend(nodes)
    float_now = {x for n in g.node if n.op_type == "Concat" for x in n.output}  # uint8 now
    info = [v for v in g.value_info if v.name not in float_now]
    del g.value_info[:]
    g.value_info.extend(info)
    _drop_unused(g)
    return done


def _uint8_source(dq, made: dict, users: dict):
    """The QLinearConv whose output (through uint8 MaxPools), used by nothing else,
    DequantizeLinear node `dq` dequantises; else None."""
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    x = dq.input[0]
    n = made.get(x)
    while n is not None and n.op_type == "MaxPool" and len(users[x]) == 1:
        x = n.input[0]
        n = made.get(x)
    ok = n is not None and n.op_type == "QLinearConv" and len(users[x]) == 1
    return n if ok else None


_DEFAULTS = {"group": 1, "auto_pad": b"NOTSET", "strides": 1, "dilations": 1, "pads": 0}


def _slim(proto) -> None:
    """Cut from the quantised graph what it stores twice or need not store: a QLinearConv's
    per-channel weight zero points that are all the same (one scalar), Conv/MaxPool
    attributes at their defaults, duplicated initializers, node names, doc strings, shape
    annotations, long tensor names and opset domains that no node uses. None changes what
    the graph computes."""
    from onnx import numpy_helper

    g = proto.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "QLinearConv" and init.get(n.input[5], np.zeros(0)).size > 1:
            z = init[n.input[5]]
            if np.all(z == z.flat[0]):
                n.input[5] = f"{n.input[5]}.scalar"
                if n.input[5] not in init:
                    init[n.input[5]] = np.asarray(z.flat[0])
                    g.initializer.append(numpy_helper.from_array(init[n.input[5]], n.input[5]))
        if n.op_type in ("QLinearConv", "MaxPool"):
            keep = [a for a in n.attribute if not _default(a)]
            del n.attribute[:]
            n.attribute.extend(keep)
    same: dict = {}
    for t in g.initializer:
        key = t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes()
        same.setdefault(key, []).append(t.name)
    alias = {n: names[0] for names in same.values() for n in names[1:]}
    for n in g.node:
        n.input[:] = [alias.get(x, x) for x in n.input]
    _drop_unused(g)
    _shorten_names(proto)
    used = {n.domain for n in g.node} | {""}
    keep = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def _default(a) -> bool:
    """A Conv or MaxPool attribute at its default value (strides etc.: 1 along every axis)."""
    from onnx import helper

    value = np.asarray(helper.get_attribute_value(a))
    return a.name in _DEFAULTS and bool(np.all(value == _DEFAULTS[a.name]))


def _users(g) -> dict[str, list]:
    """The nodes that take each tensor as an input."""
    users: dict[str, list] = defaultdict(list)
    for n in g.node:
        for x in n.input:
            users[x].append(n)
    return users


def _drop_unused(g) -> None:
    used = {x for n in g.node for x in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _shorten_names(proto) -> None:
    """Name every inner tensor by a short string (base 62; the most used ones shortest)
    and clear node names, doc strings and shape annotations (none changes what the graph
    computes)."""
    g = proto.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output} | {""}
    uses = Counter(x for n in g.node for x in (*n.input, *n.output) if x not in keep)
    uses.update(t.name for t in g.initializer)
    names = {name: _base62(i) for i, (name, _) in enumerate(uses.most_common())}
    for t in g.initializer:
        t.name = names[t.name]
        t.ClearField("doc_string")
    for n in g.node:
        n.ClearField("name")
        n.ClearField("doc_string")
        n.input[:] = [names.get(x, x) for x in n.input]
        n.output[:] = [names.get(x, x) for x in n.output]
    del g.value_info[:]


def _base62(i: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    code = digits[i % 62]
    while i >= 62:
        i = i // 62 - 1
        code = digits[i % 62] + code
    return code
