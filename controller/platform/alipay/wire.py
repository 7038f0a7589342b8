"""Alipay Open Platform's wire format: RSA2 signatures, result codes, the signed response.

One job: the bytes of the protocol, both ways, as the official ``alipay-sdk-python`` reads them:

* a request is ``POST gateway.do?<common params incl. sign>`` with a form body holding
  ``biz_content`` (JSON); the signature is SHA256withRSA (``sign_type=RSA2``, PKCS#1 v1.5) over
  every parameter but ``sign``, sorted by name, ``k=v`` joined with ``&``;
* a response is ``{"<method with _>_response": {...}, "sign": "..."}``, signed over the exact
  bytes of the inner object;
* keys travel as base64 bodies without PEM markers, the way the Alipay console shows them.

Result codes (``code``): 10000 success (S); 20000 service unavailable, outcome unknown (U);
40004 business failure (F) with a ``sub_code``. relctl's typed errors map onto them in
:data:`SUB_CODES`.

It also names the protocol's vocabulary both sides share: Beijing-time timestamps, the
``gray_strategy`` values, the base info fields, the experience status and member role.

Callers: ``controller.platform.alipay.gateway`` (the server), ``controller.platform.alipay.client``
and ``.adapter`` (relctl's side), and tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformError,
    RateLimited,
    Transient,
    Unknown,
)

__all__ = [
    "BASE_INFO",
    "BEIJING",
    "EXPERIENCER",
    "EXPERIENCE_PACKAGED",
    "GRAY_STRATEGIES",
    "NOT_EXPERIENCE",
    "SUB_CODES",
    "TIME_FORMAT",
    "alipay_time",
    "error_result",
    "load_private_key",
    "load_public_key",
    "response_key",
    "sign",
    "sign_content",
    "signed_response",
    "verify",
]

SUCCESS = {"code": "10000", "msg": "Success"}

#: ``version.gray.online``'s ``gray_strategy`` -> percentage.
GRAY_STRATEGIES = {"p10": 10, "p30": 30, "p50": 50}

#: ``experience.query``'s ``status``.
EXPERIENCE_PACKAGED = "expVersionPackaged"
NOT_EXPERIENCE = "notExpVersion"

#: ``app.members.*``'s role of a tester.
EXPERIENCER = "EXPERIENCER"

#: Alipay's timestamps are Beijing time, ``yyyy-MM-dd HH:mm:ss``.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Base info fields (``mini.baseinfo.modify``, ``version.detail.query``) -> basic info keys.
BASE_INFO = {"app_name": "name", "app_slogan": "slogan", "app_desc": "description"}


def alipay_time(moment: datetime) -> str:
    """A time as Alipay writes it: Beijing time, ``yyyy-MM-dd HH:mm:ss``."""
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


#: relctl error code -> (Alipay code, msg, sub_code). F is 40004 "Business Failed"; a rate
#: limit and "nothing happened" are 20000 with Alipay's busy sub code; U is 20000 "unknow-error"
#: (sic: Alipay's spelling).
SUB_CODES: dict[str, tuple[str, str, str]] = {
    InvalidState.code: ("40004", "Business Failed", "isv.invalid-state"),
    NotFound.code: ("40004", "Business Failed", "isv.not-found"),
    Conflict.code: ("40004", "Business Failed", "isv.conflict"),
    LimitExceeded.code: ("40004", "Business Failed", "isv.limit-exceeded"),
    NotEditable.code: ("40004", "Business Failed", "isv.not-editable"),
    RateLimited.code: ("20000", "Service Currently Unavailable", "aop.ACQ.SYSTEM_BUSY"),
    Transient.code: ("20000", "Service Currently Unavailable", "isp.service-busy"),
    Unknown.code: ("20000", "Service Currently Unavailable", "isp.unknow-error"),
}


def _pem(body: str, label: str) -> bytes:
    text = body.strip()
    if not text.startswith("-----"):
        text = f"-----BEGIN {label}-----\n{text}\n-----END {label}-----\n"
    return text.encode()


def load_private_key(body: str) -> rsa.RSAPrivateKey:
    """A private key as Alipay shows it (PKCS#1 base64 body), or a PEM."""
    key = serialization.load_pem_private_key(_pem(body, "RSA PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(body: str) -> rsa.RSAPublicKey:
    """A public key as Alipay shows it (SubjectPublicKeyInfo base64 body), or a PEM."""
    key = serialization.load_pem_public_key(_pem(body, "PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def sign_content(params: Mapping[str, str]) -> str:
    """The signed text of a request: every parameter but ``sign``, sorted, ``k=v&...``."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def sign(key: rsa.RSAPrivateKey, content: bytes) -> str:
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, content: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), content, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def response_key(method: str) -> str:
    """``alipay.open.mini.version.online`` -> ``alipay_open_mini_version_online_response``."""
    return method.replace(".", "_") + "_response"


def signed_response(key: rsa.RSAPrivateKey, method: str, result: Mapping[str, Any]) -> bytes:
    """The response body: the result object and the signature over its exact bytes."""
    inner = json.dumps(dict(result), ensure_ascii=False, separators=(",", ":"))
    signature = sign(key, inner.encode())
    return f'{{"{response_key(method)}":{inner},"sign":"{signature}"}}'.encode()


def error_result(error: PlatformError) -> dict[str, str]:
    """The result object of a typed error (the message is the ``sub_msg``)."""
    code, msg, sub_code = SUB_CODES.get(
        error.code, ("40004", "Business Failed", "isv.business-failed")
    )
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": error.message}
