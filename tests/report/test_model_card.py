"""The card's calibration section says what the scores and the band really do: no working band is claimed where
there is none, and a share of validation off the asked rate is explained, not contradicted."""

from __future__ import annotations

from nas.report.model_card import _calibration_lines

ECE = {"val": {"before": 0.08, "after": 0.02}, "test": {"before": 0.09, "after": 0.03}}
KEPT = {"cases": 500, "sensitivity": 0.96, "specificity": 0.7}


def _section(health: dict, band: list[float], val_referred: float) -> str:
    cal = {"temperature": 1.3, "ece_bins": 15, "ece": ECE, "health": health}
    ref = {"band": band, "refer_rate": 0.10, "val_referred": val_referred, "test_referred": val_referred,
           "test_not_referred": KEPT}
    return "\n".join(_calibration_lines(cal, ref))


def _health(collapsed: bool = False, degenerate: bool = False, warnings: tuple[str, ...] = ()) -> dict:
    return {"spread_p5_p95": 0.0059 if collapsed else 0.8, "band_width": 0.0 if degenerate else 0.2,
            "collapsed": collapsed, "band_degenerate": degenerate, "warnings": list(warnings)}


def test_a_working_band_is_stated_with_its_shares():
    text = _section(_health(), [0.42, 0.62], 0.10)
    assert "the score can be read as a probability" in text
    assert "are sent to a reader: the 10% of validation cases closest to the threshold" in text
    assert "**Warning**" not in text


def test_an_int8_band_holding_more_than_asked_says_why():
    text = _section(_health(), [0.42, 0.62], 0.212)
    assert "drawn to hold the 10% of validation cases" in text
    assert "as scores tie at its edges it holds 21.2% of validation" in text
    assert "It holds the 10%" not in text


def test_collapsed_scores_and_a_degenerate_band_are_not_presented_as_working():
    text = _section(_health(True, True, ("scores have collapsed", "band too narrow")), [0.743, 0.743], 0.02)
    assert "- **Warning**: scores have collapsed." in text and "- **Warning**: band too narrow." in text
    assert "**the scores have collapsed** (90% of validation within 0.0059)" in text
    assert "can be read as a probability" not in text
    assert "**Referral band not usable**: 0.7430-0.7430" in text and "are sent to a reader" not in text
