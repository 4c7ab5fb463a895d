"""The Deep Compression table: bytes and top-1 of each compressed file, against the paper.

    python experiments/deep_compression/summarize.py [--verify] [--plot] > results.md

Reads what `explorer compress --json` wrote beside each file in files/ (SqueezeNet
1.1) and front/ (the broad Fire sweep's kept networks), from run.sh.
--verify decodes every file again and measures its top-1 (as `explorer evaluate
FILE` does), and fails if it differs from the table's. --plot draws front.png:
each network's top-1 against its bytes as float32, as int8 and compressed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# SqueezeNet paper (Iandola et al., 2016), Table 2: SqueezeNet on ImageNet, 4.8 MB float32,
# 57.5% top-1; with Deep Compression at 33% sparsity, 8-bit 0.66 MB and 6-bit 0.47 MB,
# both still 57.5%.
PAPER = {(0.33, 8): 4.8 / 0.66, (0.33, 6): 4.8 / 0.47}


def rows(folder: str = "files") -> list[dict]:
    out = []
    for path in sorted((HERE / folder).glob("*.json")):
        r = json.loads(path.read_text())
        r["file"] = Path(r["path"]).name
        out.append(r)
    return sorted(out, key=lambda r: r["bytes_compressed"], reverse=True)


def coded_bits(r: dict) -> list[str]:
    """Huffman-coded bits per kept weight: its index, its position (from the file's header)."""
    from explorer import sqzfile

    folder = "files" if (HERE / "files" / r["file"]).exists() else "front"
    head = sqzfile.read(HERE / folder / r["file"]).meta
    kept = sum(x["kept"] for x in head["layers"])
    index = sum(x.get("index_bits", 0) for x in head["layers"]) / kept
    return [f"{index:.2f}" if head["bits"] else "32", f"{head['gap_bits'] / kept:.2f}"]


def markdown(table: list[dict]) -> str:
    head = ["file", "sparsity", "bits", "bytes", "x smaller", "paper x", "top-1 %"]
    head += ["lost (pts)", "pruned % (round 1)", "retrained %", "shared %"]
    head += ["bits/index", "bits/position"]
    head += ["retrain", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        how = r["sparsity_asked"], r["bits"]
        paper = PAPER.get(how)
        cells = [
            f"`{r['file']}`",
            f"{r['sparsity']:.2f}",
            str(r["bits"] or 32),
            f"{r['bytes_compressed']:,}",
            f"{r['ratio']:.1f}",
            f"{paper:.1f}" if paper else "",
            f"{100 * r['compressed_accuracy']:.2f}",
            f"{100 * (r['accuracy_before'] - r['compressed_accuracy']):+.2f}",
            f"{100 * r['accuracy_pruned']:.2f}",
            f"{100 * r['accuracy_retrained']:.2f}",
            f"{100 * r['accuracy_shared']:.2f}",
            *coded_bits(r),
            retraining(r["compression"]),
            f"{r['wall_s'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retraining(how: dict) -> str:
    """'2 ep x 0.1', or with rounds and per-layer rates '3 x 2 ep x 1, per layer'."""
    text = "{retrain_epochs} ep x {learning_rate_scale:g}".format(**how)
    if how.get("rounds", 1) > 1:
        text = f"{how['rounds']} x {text}"
    return text + (", per layer" if how.get("per_layer") else "")


def rates_table(table: list[dict]) -> str:
    """The per-layer rates of the per-layer files, beside the scan they were allocated from."""
    scan_path = HERE / "sensitivity.json"
    chosen = [r for r in table if r["compression"].get("per_layer")]
    if not chosen or not scan_path.is_file():
        return ""
    scanned = json.loads(scan_path.read_text())
    head = ["layer", "weights", *(f"top-1 at {float(g):.0%}" for g in scanned["grid"])]
    head += [f"`{r['file']}`" for r in chosen]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path, v in scanned["layers"].items():
        cells = [path.removesuffix("/kernel"), f"{v['size']:,}"]
        cells += [f"{100 * v['top1'][str(g)]:.1f}" for g in scanned["grid"]]
        cells += [f"{r['layer_sparsity'][path]:.0%}" for r in chosen]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"\nSensitivity scan ({scanned['images']:,} training images, top-1 "
        f"{100 * scanned['base']:.1f}% unpruned; each layer pruned alone, no retraining) "
        "and the rates allocated from it:\n\n" + "\n".join(lines)
    )


def main(argv: list[str]) -> int:
    table = rows()
    if not table:
        print("no compressed files yet (run experiments/deep_compression/run.sh)", file=sys.stderr)
        return 1
    for r in table:
        r["sparsity_asked"], r["bits"] = r["compression"]["sparsity"], r["compression"]["bits"]
    first = table[0]
    print(
        f"SqueezeNet 1.1 on the full Fashion-MNIST ({first['bytes_f32']:,} bytes float32, "
        f"top-1 {100 * first['accuracy_before']:.2f}% on 10,000 test images before compression)\n"
    )
    print(markdown(table))
    print(rates_table(table))
    front = rows("front")
    for r in front:
        r["sparsity_asked"], r["bits"] = r["compression"]["sparsity"], r["compression"]["bits"]
    if front:
        print("\nThe broad Fire sweep's kept networks (12 epochs on 12,000 images), compressed:\n")
        print(markdown(front))
    if "--verify" in argv:
        from explorer import deploy

        for folder, group in (("files", table), ("front", front)):
            for r in group:
                top1, n, _ = deploy.evaluate_compressed(HERE / folder / r["file"])
                if round(top1, 6) != round(r["compressed_accuracy"], 6):
                    print(
                        f"{r['file']}: top-1 {top1} != {r['compressed_accuracy']}", file=sys.stderr
                    )
                    return 1
        print("\nEvery file decoded again (`explorer evaluate`): the same top-1 as above.")
    if "--plot" in argv:
        plot(table, front)
        print("\n![top-1 against bytes](front.png)")
    return 0


def plot(table: list[dict], front: list[dict]) -> None:
    """Top-1 against bytes: each network as float32, int8 and after each compression."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from explorer import architecture as arch
    from explorer import checkpoints, complexity, sqzfile

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[str, list[dict]] = {}
    for r in [*table, *front]:
        groups.setdefault(r["source"], []).append(r)
    for rs in groups.values():
        meta = sqzfile.read(HERE / ("files" if rs[0] in table else "front") / rs[0]["file"]).meta
        plan = arch.plan(checkpoints.spec_of(meta))
        name = meta.get("trial_id", "SqueezeNet 1.1")
        base = rs[0]["accuracy_before"]
        xs = [complexity.bytes_f32(plan), complexity.bytes_int8(plan)]
        line = ax.plot(xs, [base, base], "o--", alpha=0.6, label=f"{name} ({plan_params(plan)})")
        pts = sorted(rs, key=lambda r: r["bytes_compressed"])
        ax.plot(
            [r["bytes_compressed"] for r in pts],
            [r["compressed_accuracy"] for r in pts],
            "s-",
            color=line[0].get_color(),
        )
    ax.set_xscale("log")
    ax.set_xlabel("bytes (circles: float32, int8; squares: Deep Compression files)")
    ax.set_ylabel("test top-1")
    ax.set_title("Accuracy per byte before and after Deep Compression (Fashion-MNIST)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "front.png", dpi=110)


def plan_params(plan) -> str:
    from explorer import complexity

    return f"{complexity.params(plan) / 1e3:.0f}k params"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
