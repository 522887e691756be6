"""The client of the measurement agent (`nas agent`): time a model on another machine, the deployment target.

The wire format lives here, in `MeasureSettings`, so the client and the agent validate the same fields. A search
checks the agent with `agent_info` once, then sends each candidate with `measure_remote`; an agent that refuses one
model fails that trial only (TrialError), while an agent that cannot be reached or refuses the token stops the
search with the option that fixes it (ConfigError).
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from nas.errors import ConfigError, TrialError
from nas.hardware._measurement import Measurement
from nas.hardware._profile import HardwareProfile, Protocol
from nas.spec import Precision

SETTINGS_HEADER = "X-Nas-Measure"
"""The request header that carries `MeasureSettings` as JSON; the body is the raw ONNX file."""
START_HINT = "start it on the device with: nas agent --host 0.0.0.0 --token-file TOKEN"
RETRY_BACKOFF_S = 0.5
_RETRYABLE = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


class MeasureSettings(BaseModel):
    """How the agent should time the uploaded model: the measuring part of a hardware profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(description="a latency backend the agent has, e.g. onnxruntime")
    precision: Precision
    input_shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="one sample's shape, [C, H, W]")
    batch: int = Field(default=1, ge=1)
    throughput_batch: int = Field(default=16, ge=1)
    threads: int | None = Field(default=None, ge=1)
    protocol: Protocol = Protocol()

    @classmethod
    def from_profile(cls, profile: HardwareProfile, precision: Precision,
                     input_shape: tuple[int, ...]) -> MeasureSettings:
        return cls(runtime=profile.backend, precision=precision, input_shape=list(input_shape), batch=profile.batch,
                   throughput_batch=profile.throughput_batch, threads=profile.threads, protocol=profile.protocol)

    def header(self) -> str:
        """Compact JSON with sorted keys: also the agent's cache key for these settings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def agent_info(url: str, token: str | None, *, ca_file: str | None = None, timeout: float = 10) -> dict[str, Any]:
    """The agent's device, runtimes and precisions (its `/info`), after checking it answers and takes the token."""
    with _client(url, token, ca_file, timeout) as client:
        try:
            health = client.get("/health")
        except httpx.TransportError as exc:
            if _caused_by(exc, ssl.SSLCertVerificationError):
                raise ConfigError(f"the measurement agent at {url} presented a certificate that is not trusted "
                                  f"({exc}); pass the CA certificate that signed it with --device-ca-file") from None
            raise ConfigError(f"cannot reach the measurement agent at {url}: {exc or type(exc).__name__}; "
                              f"{START_HINT}") from None
        if health.status_code != 200:
            raise ConfigError(f"{url} does not answer like a nas measurement agent (GET /health: HTTP "
                              f"{health.status_code}); {START_HINT}")
        try:
            answer = client.get("/info")
        except httpx.TransportError as exc:
            raise ConfigError(f"the measurement agent at {url} stopped answering: {exc or type(exc).__name__}") \
                from None
    if answer.status_code == 401:
        raise ConfigError(_token_refused(url, token, answer))
    if answer.status_code != 200:
        raise ConfigError(f"the measurement agent at {url} answered GET /info with HTTP {answer.status_code}: "
                          f"{_detail(answer)}")
    return answer.json()


def measure_remote(url: str, token: str | None, onnx_path: Path, profile: HardwareProfile, precision: Precision,
                   input_shape: tuple[int, ...], *, ca_file: str | None = None, retries: int = 2,
                   timeout: float = 600) -> Measurement:
    """Time `onnx_path` on the agent's device under the profile's protocol; the result says `method: remote`."""
    answer = request_measurement(url, token, onnx_path, profile, precision, input_shape, ca_file=ca_file,
                                 retries=retries, timeout=timeout)
    return Measurement.model_validate(answer["measurement"])


def request_measurement(url: str, token: str | None, onnx_path: Path, profile: HardwareProfile,
                        precision: Precision, input_shape: tuple[int, ...], *, ca_file: str | None = None,
                        retries: int = 2, timeout: float = 600) -> dict[str, Any]:
    """The agent's whole answer: `measurement`, `cached`, `queue_wait_s`, `started_at`, `finished_at`.

    Connection failures and 5xx answers are retried `retries` times (an agent restarting, a proxy hiccup); a 4xx
    answer is about this model or these settings and is not.
    """
    settings = MeasureSettings.from_profile(profile, precision, input_shape)
    body = Path(onnx_path).read_bytes()
    headers = {SETTINGS_HEADER: settings.header(), "Content-Type": "application/octet-stream"}
    failure = ""
    with _client(url, token, ca_file, timeout) as client:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                answer = client.post("/measure", content=body, headers=headers)
            except _RETRYABLE as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.TimeoutException:
                raise TrialError(f"the measurement agent at {url} did not answer within {timeout:g} s "
                                 f"for {onnx_path}") from None
            if answer.status_code >= 500:
                failure = f"HTTP {answer.status_code}: {_detail(answer)}"
                continue
            if answer.status_code == 401:
                raise ConfigError(_token_refused(url, token, answer))
            if answer.status_code >= 400:
                raise TrialError(f"the measurement agent at {url} refused {onnx_path} "
                                 f"(HTTP {answer.status_code}): {_detail(answer)}")
            return answer.json()
    raise TrialError(f"the measurement agent at {url} failed {retries + 1} times to measure {onnx_path}; "
                     f"last: {failure}")


def _client(url: str, token: str | None, ca_file: str | None, timeout: float) -> httpx.Client:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"agent URL must start with http:// or https://, got {url!r}")
    verify: ssl.SSLContext | bool = True
    if ca_file:
        if not url.startswith("https://"):
            raise ConfigError(f"a CA file ({ca_file}) was given but the agent URL {url} is not https://; "
                              "use https:// with an agent started with --ssl-certfile/--ssl-keyfile")
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot use CA file {ca_file}: {exc}") from None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, verify=verify, timeout=timeout)


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether `kind` is in the chain under `exc` (httpx wraps httpcore's error, which wraps the ssl one)."""
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _token_refused(url: str, token: str | None, answer: httpx.Response) -> str:
    given = "no token was sent" if not token else "the token was refused"
    return (f"the measurement agent at {url} requires its token and {given} ({_detail(answer)}); pass the file "
            "holding the agent's --token-file with --device-token-file")


def _detail(answer: httpx.Response) -> str:
    """The agent's message ({"detail": ...}), or the start of whatever else answered."""
    try:
        detail = answer.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else (answer.text[:300] or answer.reason_phrase)
