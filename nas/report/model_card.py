"""Model cards: what a clinic needs to know before it runs a model (data, operating point, speed, limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas._io import atomic_write_text, write_json
from nas.clinical.calibration import ASKED_SLACK


def _row(name: str, m: dict[str, float], ci: dict[str, list[float]] | None = None) -> str:
    def cell(key: str) -> str:
        return f"{m[key]:.4f}" + (f" ({ci[key][0]:.3f}-{ci[key][1]:.3f})" if ci else "")

    return f"| {name} | {cell('auc')} | {cell('accuracy')} | {cell('sensitivity')} | {cell('specificity')} |"


def _band_line(ref: dict[str, Any], health: dict[str, Any]) -> str:
    """The referral band as it is: a degenerate one is named so, and a share of validation off the asked rate
    (scores tied at the band's edges, as INT8 outputs are) is stated, never the asked rate alone."""
    low, high = ref["band"]
    shares = f"{ref['val_referred']:.1%} of validation, {ref['test_referred']:.1%} of test"
    if health["band_degenerate"]:
        return (f"- **Referral band not usable**: {low:.4f}-{high:.4f} is {health['band_width']:.4f} wide, too narrow "
                f"to mark the least certain cases ({shares}); read every case, or re-export a better-separating "
                "model.")
    if abs(ref["val_referred"] - ref["refer_rate"]) > ASKED_SLACK:
        return (f"- Referral band: scores from **{low:.4f}** to **{high:.4f}** are sent to a reader. It was drawn to "
                f"hold the {ref['refer_rate']:.0%} of validation cases closest to the threshold in logit space; as "
                f"scores tie at its edges it holds {shares}.")
    return (f"- Referral band: scores from **{low:.4f}** to **{high:.4f}** are sent to a reader: the "
            f"{ref['refer_rate']:.0%} of validation cases closest to the threshold in logit space ({shares}).")


def _calibration_lines(cal: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    ece, kept, health = cal["ece"], ref["test_not_referred"], cal["health"]
    reads = ("**the scores have collapsed** (90% of validation within "
             f"{health['spread_p5_p95']:.4f}), so a score does not read as a probability here"
             if health["collapsed"] else "the score can be read as a probability")
    return [
        "", "## Calibration and referral",
        *(f"- **Warning**: {w}." for w in health["warnings"]),
        f"- Scores are temperature-scaled: score = softmax(logits / {cal['temperature']:.4f})[1], the temperature "
        f"fitted on validation (minimum negative log-likelihood). Ranking, AUC and the figures above are unchanged by "
        f"it; {reads}.",
        f"- Expected calibration error ({cal['ece_bins']} equal-width bins of the positive-class score; lower is "
        "better):", "",
        "| split | before calibration | after calibration |", "|---|---|---|",
        *(f"| {name} | {ece[key]['before']:.4f} | {ece[key]['after']:.4f} |"
          for key, name in (("val", "validation"), ("test", "test"))),
        "",
        _band_line(ref, health),
        f"- On the {kept['cases']} test cases not referred: sensitivity {kept['sensitivity']:.4f}, specificity "
        f"{kept['specificity']:.4f}.",
    ]


RUNTIME_LABELS = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def runtime_lines(card: dict[str, Any]) -> list[str]:
    """Which runtime and precision the model ships with, why, and what every runtime measured in the search
    (settled point 19)."""
    runtime = card.get("runtime", "onnxruntime")
    lines = ["", "## Runtime",
             f"- Ships with **{RUNTIME_LABELS.get(runtime, runtime)} {card['compression']['quant']}** "
             f"(`{card['deployed_file']}`; `nas predict` and `nas evaluate` run it with that runtime)."]
    choice = card.get("runtime_choice")
    if choice is None:
        return lines + ["- The search recorded no runtime choice for this trial (one runtime was measured)."]
    lines += [f"- The search chose {RUNTIME_LABELS.get(choice['runtime'], choice['runtime'])} {choice['precision']} "
              f"for this candidate by measurement: {choice['reason']}.", "",
              "| runtime | precision | p50 ms | p95 ms | |", "|---|---|---|---|---|"]
    for t in choice["timings"]:
        shipped = "shipped" if (t["runtime"], t["precision"]) == (runtime, card["compression"]["quant"]) else ""
        if t["p50_ms"] is None:
            lines.append(f"| {t['runtime']} | {t['precision']} | - | - | {t['skipped']} |")
        else:
            lines.append(f"| {t['runtime']} | {t['precision']} | {t['p50_ms']:.3f} | {t['p95_ms']:.3f} | {shipped} |")
    lines.append("")
    lines.append("- Timed in the search's phase 1 on the untrained shapes (the same shapes as the shipped model); "
                 "the Latency section below is the shipped artifact's own measurement.")
    return lines


def _parity_line(card: dict[str, Any]) -> str:
    line = (f"- The float ONNX was checked against PyTorch on validation images: class probabilities differ by at "
            f"most {card['parity_max_abs_diff']:.2e}")
    parity = card.get("deployed_parity")
    if parity is None or (parity["file"], parity["runtime"]) == ("model.onnx", "onnxruntime"):
        return line
    how = (f"within the {parity['tolerance']:g} tolerance" if parity["tolerance"] is not None
           else "(INT8: judged by its validation AUC above, not by this difference)")
    runtime = RUNTIME_LABELS.get(parity["runtime"], parity["runtime"])
    return (line + f"; the deployed `{parity['file']}` run by {runtime} differs by at most "
            f"{parity['max_abs_diff']:.2e} {how}")


def write_model_card(out: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    json_path = write_json(out / "model_card.json", card)
    metrics, lat, io, data = card["metrics"], card["latency"], card["preprocessing"], card["data"]
    sizes = ", ".join(f"{k} {v:,}" for k, v in data["split_sizes"].items())
    lines = [
        f"# Model card: {card['study']} trial {card['trial']} ({card['format']})",
        "",
        f"**Model**: `{card['summary']}`  ",
        f"**Deployed file**: `{card['deployed_file']}` ({card['compression']['quant']}, for "
        f"{RUNTIME_LABELS.get(card.get('runtime', 'onnxruntime'), card.get('runtime'))})  ",
        f"**Task**: {card['task']}, positive class **{data['positive_class']}**  ",
        f"**Parameters**: {card['params']:,} · **MACs**: {card['macs'] / 1e6:.1f} M",
        "",
        "## Data",
        f"- `{data['path']}` ({data['format']}), classes {', '.join(data['classes'])}; splits: {sizes}.",
        "- The search chose this model on the validation split. The test split was used once, to write this card.",
        "",
        "## Operating point and accuracy (of the deployed file)",
        f"- Threshold **{card['threshold']:.4f}** on the calibrated positive-class score, chosen on validation to "
        f"reach sensitivity {card['target_sensitivity']}. The search's report and `nas pick` show its threshold "
        f"on the uncalibrated score (temperature 1): {metrics['val_recorded']['threshold']:.4f}.",
        "- Test figures in brackets are 95% bootstrap intervals (1,000 resamples of the test cases).",
        "",
        "| split | AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|",
        _row("validation", metrics["val"]),
        _row("test", metrics["test"], metrics["test_ci95"]),
    ]
    if card["compression"]["quant"] != "fp32":
        lines.append(_row("validation, as recorded by the search", metrics["val_recorded"]))
    lines += _calibration_lines(card["calibration"], card["referral"])
    c = card["compression"]
    pruned = f"ratio {c['prune_ratio']:.2f}, {c['pruned_layers']} layers narrowed" if c["prune_ratio"] else "no"
    lines += ["", "## Compression",
              f"- Pruned: {pruned}; distilled: {c['distilled_from'] or 'no'}; shipped precision: {c['quant']}."]
    if c.get("val_float") and c["val_deployed_in_search"] != c["val_float"]:
        lines.append(f"- Validation AUC in the search: float {c['val_float']['auc']:.4f}, deployed "
                     f"{c['val_deployed_in_search']['auc']:.4f}.")
    if c.get("latency_by_precision"):
        lines.append("- p50 latency per precision, measured in one session during the search: " + ", ".join(
            f"{p} {m['p50_ms']:.3f} ms" for p, m in c["latency_by_precision"].items()) + ".")
    lines += [f"- Note: {flag}." for flag in c.get("flags", [])]
    lines += runtime_lines(card)
    lines += [
        "",
        "## Latency",
        f"- p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms at batch "
        f"{lat['batch']} ({lat['method']}, {lat['precision']})",
        f"- {lat['backend']} ({lat['runtime_version']}), {lat['threads']} threads, on {lat['device']}",
        "",
        "## Input and output (also in `io.json`, for a deployment to check)",
        f"- `{io['input_name']}`: {io['dtype']} {io['input_shape']} ({io['layout']}, {io['channels']})",
        f"- Resize {io['resize']}; normalise {io['normalise']}",
        f"- Output `{io['output_name']}`: {io['output']}; {io['decision']}",
        _parity_line(card),
        "",
        "## Intended use and limits",
        "- A research model that ranks images for review. It does not make a diagnosis. Validate it on the "
        "clinic's own images and scanners before any use, and keep a radiologist in the loop.",
        f"- Trained on `{data['path']}`. Performance on other populations, devices and resolutions is unknown.",
        "- The threshold holds the target sensitivity on validation. On new data, check sensitivity before relying "
        "on it.",
    ]
    md_path = atomic_write_text(out / "model_card.md", "\n".join(lines) + "\n")
    return md_path, json_path
