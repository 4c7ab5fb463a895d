"""A trained network as an ONNX file, checked against JAX, and measured in ONNX Runtime.

The file's contract: one input `images`, NHWC images exactly as the data set
stores them (pixels 0-255; uint8, or float32 holding the same values), shape
[N, H, W, C] with N free; one output `logits`, float32 [N, classes]. The
per-channel normalisation (x - mean) / std is inside the graph, so a caller
feeds raw pixels. The file's metadata (`metadata_props`) records the data set,
mean, std and the ArchSpec.

jax2onnx traces the JAX function. The model is built with its own lowering
(`_lowering`): XLA's own convolution (ONNX Conv), the 3x3/2 ceil-mode max-pool as
strided slices and maxima (-inf padded), in the textbook order conv + bias, ReLU,
pool: the same function as the trainer's (which pools first, an exact rewrite), but
each convolution then carries its bias and is followed by its ReLU, which ONNX
Runtime fuses, and the int8 graph quantises the ReLU's output rather than a
convolution's before its bias (explorer.export_int8). The `reference` lowering's
`flax.linen.max_pool` call is not exportable with jax2onnx 0.13 (its replacement of
that function takes the window keyword-only), and the CPU lowerings' im2col adds
nothing for an exporter.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from explorer.architecture import ArchSpec, Plan
from explorer.architecture import plan as make_plan
from explorer.console import first_line

INPUT, OUTPUT = "images", "logits"
DTYPES = ("uint8", "float32")
TOLERANCE = 1e-4  # max |ONNX Runtime - JAX| on float32 logits that `verify` callers accept


class ExportError(Exception):
    """An export that failed, or a file that is not a usable ONNX model; one line."""


def to_onnx(
    plan: Plan | ArchSpec,
    params,
    mean,
    std,
    path: str | os.PathLike,
    input_dtype: str = "uint8",
    metadata: dict | None = None,
) -> Path:
    """Write the network with these parameters as an ONNX file; returns its path.

    mean, std: per channel, in pixel units (0-255), as `Dataset.mean/std`.
    input_dtype: "uint8" or "float32" (pixels 0-255 either way). The batch
    dimension is free. metadata: more key/values for the file's metadata
    (stored as JSON text). The file is written to a temporary name and renamed.
    """
    import jax
    import jax.numpy as jnp

    from explorer import models

    if input_dtype not in DTYPES:
        raise ExportError(f"input dtype: expected one of {', '.join(DTYPES)}, got {input_dtype!r}")
    p = plan if isinstance(plan, Plan) else make_plan(plan)
    spec = p.spec
    model = models.build(p, _lowering())
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(params))
    mean = np.asarray(mean, np.float32).reshape(spec.in_channels)
    std = np.asarray(std, np.float32).reshape(spec.in_channels)

    def forward(images):
        x = (images.astype(jnp.float32) - mean) / std
        return model.apply({"params": params}, x)

    x = jax.ShapeDtypeStruct(("N", spec.image_size, spec.image_size, spec.in_channels), input_dtype)
    try:
        with warnings.catch_warnings():  # the converter's own uses of deprecated JAX names
            warnings.simplefilter("ignore", DeprecationWarning)
            proto = _jax2onnx()(forward, [x], model_name="squeezenet")
    except Exception as e:  # the converter raises many kinds for what it cannot convert
        raise ExportError(f"jax2onnx could not convert the network: {first_line(e)}") from None
    _rename(proto, proto.graph.input[0].name, INPUT)
    _rename(proto, proto.graph.output[0].name, OUTPUT)
    info = {
        "producer": "squeeze-explorer",
        "input": f"{INPUT}: {input_dtype} [N, H, W, C] pixels 0-255; normalised inside",
        "output": f"{OUTPUT}: float32 [N, {spec.num_classes}]",
        "spec": json.dumps(spec.as_dict()),
        "mean": json.dumps(mean.tolist()),
        "std": json.dumps(std.tolist()),
    }
    for k, v in (metadata or {}).items():
        info[k] = v if isinstance(v, str) else json.dumps(v)
    for k, v in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = (
        f"SqueezeNet-like CNN. Input {INPUT}: NHWC pixels 0-255 ({input_dtype}); "
        f"output {OUTPUT}: float32 [N, {spec.num_classes}]."
    )
    import onnx

    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        raise ExportError(
            f"the exported graph does not pass ONNX's checker: {first_line(e)}"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def metadata(path: str | os.PathLike) -> dict:
    """The file's metadata (values that are JSON decoded); ExportError if it is no model."""
    meta = session(path).get_modelmeta().custom_metadata_map
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def predict(path: str | os.PathLike, images: np.ndarray, batch: int = 1000, opened=None):
    """Logits of ONNX Runtime for uint8 NHWC images (cast to the file's input type);
    opened: a session of the file already open (`session`)."""
    s = opened or session(path)
    inp = s.get_inputs()[0]
    _check_images(path, inp, images)
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    out = [
        s.run(None, {inp.name: images[i : i + batch].astype(dtype)})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def verify(path, plan: Plan | ArchSpec, params, mean, std, images: np.ndarray) -> float:
    """Max |ONNX Runtime - JAX| of the logits on these uint8 NHWC images.

    JAX runs the model as the trainer built it (the default lowering); callers
    compare the result with TOLERANCE.
    """
    import jax
    import jax.numpy as jnp

    from explorer import models

    p = plan if isinstance(plan, Plan) else make_plan(plan)
    model = models.build(p)
    mean = jnp.asarray(np.asarray(mean, np.float32))
    std = jnp.asarray(np.asarray(std, np.float32))

    @jax.jit
    def forward(params, x):
        return model.apply({"params": params}, (x.astype(jnp.float32) - mean) / std)

    want = np.asarray(forward(jax.device_get(params), images))
    got = predict(path, images)
    return float(np.max(np.abs(got - want))) if len(images) else 0.0


def ort_top1(path: str | os.PathLike, data, batch: int = 1000, threads: int | None = None) -> float:
    """Top-1 of the ONNX file on a Dataset's test split, run by ONNX Runtime (on `threads`
    threads; None: ONNX Runtime's default)."""
    logits = predict(path, data.x_test, batch, session(path, threads))
    return float(np.mean(logits.argmax(-1) == data.y_test))


def ort_latency_b1_ms(path: str | os.PathLike, repeats: int = 100, warmup: int = 10) -> float:
    """Median batch-1 latency (ms) in ONNX Runtime on the CPU, one thread, after a warm-up."""
    s = session(path, threads=1)
    inp = s.get_inputs()[0]
    dims = [d if isinstance(d, int) else 1 for d in inp.shape]
    dims[0] = 1
    x = np.zeros(dims, np.uint8 if inp.type == "tensor(uint8)" else np.float32)
    feed = {inp.name: x}
    for _ in range(warmup):
        s.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def size_bytes(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size


# ---------------------------------------------------------------- helpers
def session(path, threads: int | None = None):
    """An ONNX Runtime CPU session; a missing or unreadable file raises ExportError."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(
            f"{path}: not an ONNX model ONNX Runtime can load ({first_line(e)})"
        ) from None
    ins = s.get_inputs()
    if (
        len(ins) != 1
        or len(ins[0].shape) != 4
        or ins[0].type not in ("tensor(uint8)", "tensor(float)")
    ):
        raise ExportError(
            f"{path}: expected one NHWC image input (uint8 or float32), "
            f"got {[(i.name, i.type, i.shape) for i in ins]}"
        )
    return s


def _check_images(path, inp, images: np.ndarray) -> None:
    want = [d if isinstance(d, int) else None for d in inp.shape[1:]]
    got = list(images.shape[1:])
    if images.ndim != 4 or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
        raise ExportError(
            f"{path}: takes images of shape [N, {', '.join(map(str, want))}], got {got}"
        )


def _rename(proto, old: str, new: str) -> None:
    """Rename a value everywhere in the (flat) graph."""
    if old == new:
        return
    g = proto.graph
    for vi in (*g.input, *g.output, *g.value_info):
        if vi.name == old:
            vi.name = new
    for node in g.node:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name == old:
                    seq[i] = new


def _lowering():
    """XLA's convolutions and separable pool, in the order conv + bias, ReLU, pool."""
    from explorer.lowering import Lowering

    return Lowering("export", "xla", fast_pool=True, pool_first=False)


def _jax2onnx():
    # Imported late (seconds); its optional plugins for other libraries log
    # tracebacks on import when those do not match this JAX: they are not used.
    logging.getLogger("jax2onnx").setLevel(logging.ERROR)
    from jax2onnx import to_onnx

    return to_onnx
