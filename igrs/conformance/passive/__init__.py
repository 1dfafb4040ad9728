"""Passive checker: every IGRS message seen on the network or in a capture, checked against
specs/ without sending anything. Sans-IO: ``PassiveChecker`` is fed datagrams and TCP
segments with their timestamps (by ``check_capture`` from a file, by ``igrs.conformance.watch``
from live sockets) and returns the violations it finds, each naming the spec rule it breaks.

What is checked, and the limits: specs/conformance/passive.md. The modules, by job:
``datagram_rules`` (one ISDP datagram, §2), ``isdp_timing`` (across datagrams, §3),
``http_exchanges`` (M-POST exchanges read from TCP streams, §4), ``description_check``
(the description answer), ``checker`` (``PassiveChecker`` and the capture report, §5),
``violations`` and ``limits`` (what they share, §6).
"""

from igrs.conformance.passive.checker import CaptureReport, PassiveChecker, check_capture, check_pcap
from igrs.conformance.passive.violations import Violation, endpoint_text

__all__ = ["CaptureReport", "PassiveChecker", "Violation", "check_capture", "check_pcap", "endpoint_text"]
