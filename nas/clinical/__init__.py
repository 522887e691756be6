"""The clinical loop around an exported model: calibrated scores with a referral band, prediction on PNG / JPEG /
DICOM files, Grad-CAM heatmaps, evaluation on a clinic's own labelled images, a shadow-mode log and drift checks.

Submodules load what they need when used (`nas.clinical.heatmap` pulls in PyTorch and grad-cam), so importing
this package stays cheap.
"""

from nas.clinical.calibration import (
    calibrated_scores, expected_calibration_error, fit_temperature, in_band, referral_band,
)

__all__ = ["calibrated_scores", "expected_calibration_error", "fit_temperature", "in_band", "referral_band"]
