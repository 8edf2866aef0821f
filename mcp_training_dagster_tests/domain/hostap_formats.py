"""The hostap syslog format universe (test data) rendered as log lines, for catalog coverage."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "data" / "hostap" / "syslog_formats.tsv.gz"
_MACSTR = re.compile(r"%02x:%02x:%02x:%02x:%02x:%02x", re.I)
_CONV = re.compile(
    r"%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t|L)?([sdiuxXcpfgeo%])|%\"\s*PRI\w+\s*\"|\"\s*PRI\w+\s*\""
)
_SAMPLE = {
    "s": "abc",
    "d": "1",
    "i": "1",
    "u": "1",
    "x": "1f",
    "X": "1F",
    "c": "a",
    "p": "0x1",
    "f": "1.0",
    "g": "1",
    "e": "1",
    "o": "1",
    "%": "%",
}


def render(fmt: str) -> str:
    """A log line the format could print (arguments replaced by plain sample values)."""
    line = _MACSTR.sub("02:11:22:33:44:55", fmt)
    line = _CONV.sub(lambda m: _SAMPLE.get(m.group(1) or "d", "1"), line)
    return line.replace("\\n", " ").replace('\\"', '"').strip()


def syslog_lines() -> pd.DataFrame:
    """One row per format that reaches syslog by default: program, call, level, format, the rendered
    line as the daemon writes it (wpa_msg prefixes the interface; hostapd_logger the interface, station
    and module) and the process name that writes it."""
    d = pd.read_csv(DATA, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    body = d["format"].map(render)
    logger = d["call"].str.contains("logger")
    module = d["call"].map(
        lambda c: "WPA" if c.startswith("wpa_auth") else ("IEEE 802.1X" if c.startswith("eapol") else "IEEE 802.11")
    )
    line = body.where(~d["call"].str.startswith("wpa_msg"), "wlan0: " + body)
    line = line.where(~logger, "wlan0: STA 02:11:22:33:44:55 " + module + ": " + body)
    process = d["program_dir"].map(lambda p: "hostapd" if p in ("hostapd", "src/ap") else "wpa_supplicant")
    return d.assign(line=line, process=process)
