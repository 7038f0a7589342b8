"""The embedded platform simulator, the default adapter: one package, one module per job.

``Simulator`` (``simulator``) implements :class:`~controller.platform.protocol.Platform` over one
SQLite file and plays the platform side (target apps, uploads, reviews, clock, faults). Its
parts: ``store`` (SQLite: schema, transactions), ``model`` (settings and the pure helpers:
compatibility matrix, grayscale buckets, QR codes), ``clock`` and ``codec`` (values to JSON
and back).

Callers: :func:`controller.platform.open_platform` (``sim:PATH``), ``controller.platform.cli``
(``relctl platform ...``), the demo, tests and benchmarks.
"""

from __future__ import annotations

from controller.platform.sim.model import AppSettings, FaultSettings, ReviewMode, UploadedVersion
from controller.platform.sim.simulator import Simulator

__all__ = ["AppSettings", "FaultSettings", "ReviewMode", "Simulator", "UploadedVersion"]
