"""Where a study's latencies come from: the profile's backend on this machine, an agent on the device over HTTP,
or the calibrated estimate. Chosen once, before any training, and recorded with every measurement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nas.errors import ConfigError
from nas.hardware._backend import BACKENDS, create_backend, measure
from nas.hardware._measurement import Measurement
from nas.hardware._profile import HardwareProfile
from nas.spec import Precision

if TYPE_CHECKING:
    from torch import nn

How = Literal["local", "remote", "estimate"]


@dataclass(frozen=True)
class Target:
    profile: HardwareProfile
    how: How = "local"
    device_url: str | None = None
    token: str | None = None
    ca_file: str | None = None
    device: str | None = None
    """The device that answers: the agent's reported name for a remote target."""
    runtime: str | None = None
    """What measures: the profile's backend, or with --any-device the agent's runtime when it lacks that one."""
    precisions: tuple[str, ...] = ()
    """The profile's precisions this target can measure: what the sampler may propose."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtime", self.runtime or self.profile.backend)
        object.__setattr__(self, "precisions", self.precisions or tuple(self.profile.precisions))

    @property
    def needs_model(self) -> bool:
        return self.how == "local" and BACKENDS.get(self.profile.backend).needs_model

    def measure(self, onnx_path: Path, precision: Precision, input_shape: tuple[int, ...],
                model: nn.Module | None = None) -> Measurement:
        if self.how == "remote":
            from nas.hardware.remote import measure_remote

            profile = self.profile.model_copy(update={"backend": self.runtime})
            return measure_remote(self.device_url, self.token, onnx_path, profile, precision,  # type: ignore[arg-type]
                                  input_shape, ca_file=self.ca_file)
        if self.how == "estimate":
            return create_backend("estimate").measure(onnx_path, profile=self.profile, precision=precision,
                                                      input_shape=input_shape)
        return measure(onnx_path, self.profile, precision, input_shape, model=model)

    def describe(self) -> dict[str, object]:
        return {"how": self.how, "device_url": self.device_url, "device": self.device, "runtime": self.runtime,
                "precisions": list(self.precisions)}


def mismatch(profile: HardwareProfile, info: dict) -> list[str]:
    """How a device (an agent's /info) differs from what the profile describes (settled point 5)."""
    problems = []
    measurable = info.get("measurable", {})
    if profile.backend not in measurable:
        problems.append(f"it cannot measure with {profile.backend} (it measures with: "
                        f"{', '.join(measurable) or 'nothing'})")
    # Every machine has a CPU: a cpu profile matches any agent running ONNX Runtime, GPU machines included.
    if profile.device_kind != "cpu" and info.get("device_kind") != profile.device_kind:
        problems.append(f"it is a {info.get('device_kind')} device, the profile a {profile.device_kind}")
    if profile.device_match and profile.device_match.lower() not in str(info.get("device", "")).lower():
        problems.append(f"its device {info.get('device')!r} is not a {profile.device_match!r}")
    return problems


def open_target(profile: HardwareProfile, *, device_url: str | None = None, token_file: str | None = None,
                ca_file: str | None = None, allow_estimate: bool = False, any_device: bool = False) -> Target:
    """Check, before any training is spent, that the profile's latencies can be taken, and how.

    A remote agent must answer and match the profile unless `any_device` (then the records carry the agent's real
    device); without an agent the profile's backend must run here, or the estimate is used when allowed.
    """
    if device_url:
        from nas.hardware.remote import agent_info

        token = Path(token_file).read_text().strip() if token_file else None
        info = agent_info(device_url, token, ca_file=ca_file)
        problems = mismatch(profile, info)
        if problems and not any_device:
            raise ConfigError(f"the agent at {device_url} does not match hardware profile {profile.name!r}: "
                              + "; ".join(problems) + ". Run the agent on the profile's device, choose the profile "
                              "of the device it runs on, or pass --any-device to measure there anyway")
        measurable = info.get("measurable", {})
        runtime = profile.backend if profile.backend in measurable else next(
            (r for r in ("onnxruntime", *measurable) if r in measurable), None)
        precisions = tuple(p for p in profile.precisions if p in measurable.get(runtime, ()))
        if runtime is None or not precisions:
            raise ConfigError(f"the agent at {device_url} ({info.get('device')}) can measure none of profile "
                              f"{profile.name!r}'s precisions ({', '.join(profile.precisions)}); it measures "
                              + (", ".join(f"{r}: {', '.join(p)}" for r, p in measurable.items()) or "nothing"))
        return Target(profile, "remote", device_url, token, ca_file, device=str(info.get("device")),
                      runtime=runtime, precisions=precisions)
    reason = BACKENDS.get(profile.backend).unavailable(profile)
    if reason is None:
        return Target(profile, "local")
    if allow_estimate:
        from nas.hardware.estimate import fit_profile

        fit_profile(profile)  # a profile that cannot be estimated fails here, before any training
        return Target(profile, "estimate", device=f"{profile.description} (estimated)")
    if BACKENDS.get(profile.backend).needs_model:
        raise ConfigError(f"hardware profile {profile.name!r} times PyTorch models with {profile.backend}, but "
                          f"{reason}. Run the search on the machine with the GPU")
    raise ConfigError(
        f"hardware profile {profile.name!r} measures with {profile.backend}, but {reason}. Start the agent on the "
        f"device (nas agent --host 0.0.0.0 --token-file TOKEN) and pass --device-url http://DEVICE:8765 "
        f"--device-token-file TOKEN, or pass --allow-estimate to use the calibrated estimate (labelled as such)")
