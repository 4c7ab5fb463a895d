"""The Deep Compression table: bytes and top-1 of each compressed file, against the paper.

    python experiments/deep_compression/summarize.py [--verify] > results.md

Reads what `explorer compress --json` wrote beside each file in files/ (run.sh).
--verify decodes every file again and measures its top-1 on the whole test set
(as `explorer evaluate FILE` does), and fails if it differs from the table's.
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


def rows() -> list[dict]:
    out = []
    for path in sorted((HERE / "files").glob("*.json")):
        r = json.loads(path.read_text())
        r["file"] = Path(r["path"]).name
        out.append(r)
    return sorted(out, key=lambda r: r["bytes_compressed"], reverse=True)


def markdown(table: list[dict]) -> str:
    head = ["file", "sparsity", "bits", "bytes", "x smaller", "paper x", "top-1 %"]
    head += ["lost (pts)", "pruned %", "retrained %", "shared %", "minutes"]
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
            f"{r['wall_s'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    if "--verify" in argv:
        from explorer import deploy

        for r in table:
            top1, n, _ = deploy.evaluate_compressed(HERE / "files" / r["file"])
            if round(top1, 6) != round(r["compressed_accuracy"], 6):
                print(f"{r['file']}: top-1 {top1} != {r['compressed_accuracy']}", file=sys.stderr)
                return 1
        print(f"\nEvery file decoded again: the same top-1 on {n:,} test images.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
