"""The platform boundary: adapter protocol, typed errors, and the embedded simulator.

``open_platform(spec)`` turns an adapter spec (``relctl.yaml``'s ``platform:`` or the CLI's
``--platform``) into a :class:`~controller.platform.protocol.Platform`. Called by
``controller.cli``, ``controller.daemon`` and the demo.
"""

from __future__ import annotations

from pathlib import Path

from controller.platform.protocol import Platform

#: Adapter schemes ``open_platform`` understands, with a one-line description each.
SCHEMES = {
    "sim": "embedded platform simulator over one SQLite file: sim:PATH",
    "http": "a server of the HTTP contract (schemas/platform-openapi.yaml): http://HOST:PORT",
    "https": "the same over TLS: https://HOST[/PREFIX]; token from $RELCTL_PLATFORM_TOKEN",
    "alipay": "Alipay Open Platform: alipay:[GATEWAY_URL]; app id and keys from $RELCTL_ALIPAY_*",
    "wechat": "WeChat mini programs (wxa/*): wechat:[BASE_URL]; $RELCTL_WECHAT_APP_ID/_APP_SECRET",
}


def open_platform(spec: str) -> Platform:
    """Open the platform adapter named by ``spec``.

    ``sim:PATH`` opens the simulator database at ``PATH``, e.g. ``sim:.relctl/platform.db``;
    it must exist (``relctl platform --db PATH init`` creates it), so a typo in the path is an
    error, never a new empty platform. ``http://HOST:PORT[/PREFIX]`` (or ``https``) speaks the
    HTTP contract with the bearer token of ``$RELCTL_PLATFORM_TOKEN``. ``alipay:[GATEWAY_URL]`` is
    relctl's Alipay Open Platform adapter (``$RELCTL_ALIPAY_*``); ``wechat:[BASE_URL]`` is
    relctl's WeChat adapter (``$RELCTL_WECHAT_APP_ID``/``_APP_SECRET``). Raises ValueError for a
    spec that names no known adapter, PlatformUnusable for a path that holds no usable
    simulator database (or, for http, no token).
    """
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        known = "; ".join(SCHEMES.values())
        raise ValueError(f"unknown platform adapter {spec!r}: expected one of: {known}")
    if scheme == "sim":
        if not rest.strip():
            raise ValueError("sim: needs a database path, e.g. sim:.relctl/platform.db")
        from controller.platform.sim import Simulator

        return Simulator(Path(rest), create=False)
    if scheme in ("http", "https"):
        if not rest.startswith("//") or not rest[2:].strip("/"):
            raise ValueError(f"{scheme}: needs a host, e.g. {scheme}://127.0.0.1:8040")
        from controller.platform.http.client import HttpPlatform

        return HttpPlatform(spec)
    if scheme == "alipay":
        from controller.platform.alipay.adapter import open_alipay

        return open_alipay(rest)
    if scheme == "wechat":
        from controller.platform.wechat.adapter import DEFAULT_BASE_URL, WeChatPlatform

        base = rest.strip() or DEFAULT_BASE_URL
        if not base.startswith(("http://", "https://")) or not base.split("//", 1)[1].strip("/"):
            raise ValueError(f"wechat: takes a base URL or nothing, e.g. wechat:{DEFAULT_BASE_URL}")
        return WeChatPlatform(base)
    raise AssertionError(scheme)  # pragma: no cover - SCHEMES and the branches agree
