"""Model cards: what a clinic needs to know before it runs a model (data, operating point, speed, limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas._io import atomic_write_text, write_json


def write_model_card(out: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    json_path = write_json(out / "model_card.json", card)
    val, test, lat = card["metrics"]["val"], card["metrics"].get("test"), card["latency"]
    pre = card["preprocessing"]
    lines = [
        f"# Model card: {card['study']} trial {card['trial']}",
        "",
        f"**Model**: `{card['summary']}`  ",
        f"**Task**: {card['task']} (positive class: {card['data']['positive_class']})  ",
        f"**Parameters**: {card['params']:,} · **MACs**: {card['macs'] / 1e6:.1f} M",
        "",
        "## Data",
        f"- Source: `{card['data']['path']}` ({card['data']['format']}), classes {', '.join(card['data']['classes'])}",
        "- The search chose this model on the validation split; the test split was used once, for this report.",
        "",
        "## Operating point",
        f"- Threshold **{val['threshold']:.4f}** on the positive-class score, chosen on validation to reach "
        f"sensitivity {card['target_sensitivity']}.",
        "",
        "| split | AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|",
        f"| validation | {val['auc']:.4f} | {val['accuracy']:.4f} | {val['sensitivity']:.4f} | {val['specificity']:.4f} |",
    ]
    if test:
        lines.append(f"| test | {test['auc']:.4f} | {test['accuracy']:.4f} | {test['sensitivity']:.4f} | "
                     f"{test['specificity']:.4f} |")
    else:
        lines.append("| test | not computed (only front members and baselines are scored on test) | | | |")
    lines += [
        "",
        "## Latency",
        f"- p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms at batch "
        f"{lat['batch']} ({lat['method']})",
        f"- {lat['backend']} ({lat['runtime_version']}), {lat['precision']}, {lat['threads']} threads, on {lat['device']}",
        "",
        "## Input",
        f"- `{pre['input_name']}`: {pre['dtype']} {pre['input_shape']} ({pre['layout']}, {pre['channels']})",
        f"- Resize {pre['resize']}; normalise {pre['normalise']}",
        f"- Output `{pre['output_name']}`: {pre['output']}",
        f"- ONNX checked against PyTorch: max difference {card['parity_max_abs_diff']:.2e}",
        "",
        "## Intended use and limits",
        "- A research model that ranks images for review; it is not a diagnosis. Validate it on the clinic's own "
        "images and scanners before any use, and keep a radiologist in the loop.",
        f"- Trained on {card['data']['path']}; performance on other populations, devices and resolutions is unknown.",
    ]
    md_path = atomic_write_text(out / "model_card.md", "\n".join(lines) + "\n")
    return md_path, json_path
