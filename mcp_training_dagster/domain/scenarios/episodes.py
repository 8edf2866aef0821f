"""Episodes: planning, scheduling and the builders that write attacks and benign lookalikes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcp_training_dagster.domain.scenarios.config import _DAY, _HOUR, _SCEN, ScenarioConfig
from mcp_training_dagster.domain.scenarios.templates import TEMPLATE_CODES
from mcp_training_dagster.domain.scenarios.world import (
    _ASUS_ATTACK_DISC,
    _ASUS_FAILS,
    _CHANSPECS,
    _DFS_CHANNELS,
    _FREQS,
    _OPENWRT_ATTACK_DISC,
    _OPENWRT_FAILS,
    _OUIS,
    _Clock,
    _Device,
    _Log,
    _loguniform,
    _new_mac,
    _radio_line,
    _Writer,
)


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------
@dataclass
class _Episode:
    scenario: str
    device: int
    start: int
    length: int  # planned (reserved) length in seconds
    params: dict[str, Any]
    entity_kind: str = "device"
    entity: str = "*"
    end: int = 0  # actual end (exclusive)


def _plan(scenario: str, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """Reserved length (s) and the parameters drawn before placing the episode."""
    if scenario == "deauth_flood":
        return int(_loguniform(rng, 180, 1800)), {}
    if scenario == "auth_bruteforce":
        return int(_loguniform(rng, 300, 3600)), {}
    if scenario == "reconnect_loop":
        return int(_loguniform(rng, 900, 3600)), {}
    if scenario == "mac_flood":
        return int(_loguniform(rng, 180, 1800)), {}
    if scenario == "radio_fault":
        return int(_loguniform(rng, 300, 3600)), {}
    if scenario == "silence":
        return int(rng.uniform(1, 6) * _HOUR), {}
    if scenario == "reboot_wave":
        gap, span = int(rng.uniform(60, 240)), int(rng.uniform(60, 180))
        return gap + max(span + 20, 115) + 10, {"gap": gap, "span": span}
    if scenario == "mistyped_passphrase":
        return 200, {"fails": int(rng.integers(1, 4))}
    if scenario == "iot_gtk_deauth":
        return _HOUR + 400, {}  # holds one rekey tick wherever it starts
    if scenario == "boot_dfs":
        return 150, {}
    raise ValueError(f"unknown scenario {scenario!r}")


def _schedule(cfg: ScenarioConfig, clock: _Clock) -> list[_Episode]:
    """Place every episode: stratified over the period after the first day, never overlapping (with a
    margin) on one device; silence lands in the daytime when a network is busy."""
    rng = np.random.default_rng([cfg.seed, 3])
    items = [s for s in cfg.scenarios for _ in range(cfg.episodes_per_scenario)]
    items += [s for s in cfg.benign for _ in range(cfg.benign_per_scenario)]
    rng.shuffle(items)
    T = clock.horizon
    lo = _DAY if T >= 2 * _DAY else T // 4
    margin = 15 * 60
    busy: dict[int, list[tuple[int, int]]] = {d: [] for d in range(cfg.n_devices)}
    slot = (T - lo) / max(1, len(items))
    dev_off = int(rng.integers(cfg.n_devices))
    out = []
    for j, scen in enumerate(items):
        length, params = _plan(scen, rng)
        for attempt in range(600):  # stratified first, then anywhere, then (silence) at any hour
            base = lo + (j + rng.random()) * slot if attempt < 200 else lo + rng.random() * (T - lo)
            if scen == "silence" and attempt < 400:  # a normally busy period: daytime
                day = math.floor((base + clock.sod0) / _DAY)
                latest = max(8.5, 20 - length / _HOUR)
                base = clock.day_start(day) + rng.uniform(8, latest) * _HOUR
            start = int(base)
            d = (j + dev_off + attempt) % cfg.n_devices
            if start < lo or start + length > T - 60:
                continue
            if any(start < b + margin and start + length + margin > a for a, b in busy[d]):
                continue
            busy[d].append((start, start + length))
            out.append(_Episode(scen, d, start, length, params))
            break
        else:
            raise ValueError(
                f"cannot place {len(items)} non-overlapping episodes on {cfg.n_devices} device(s) over "
                f"{cfg.days} days (failed on {scen!r}); use more days or devices, or fewer episodes"
            )
    return sorted(out, key=lambda e: (e.start, e.device))


class _Injector:
    """Writes the records of each episode and says which normal records it replaces."""

    def __init__(self, log: _Log, clock: _Clock, used: set[str], seed: int) -> None:
        self.log, self.clock, self.used, self.seed = log, clock, used, seed
        self.removals: list[tuple[int, str, int, int, bool]] = []  # device, mac or "", start, end, all scenarios

    def run(self, ep: _Episode, dev: _Device, k: int) -> None:
        self.build(ep, dev, np.random.default_rng([self.seed, 4, k]))

    def build(self, ep: _Episode, dev: _Device, rng: np.random.Generator) -> None:
        """Write episode ``ep`` on ``dev`` with ``rng`` (also used by :func:`inject_episodes`)."""
        getattr(self, "_" + ep.scenario)(ep, dev, rng, _Writer(self.log, dev, rng), _SCEN[ep.scenario])

    def _target_station(
        self, dev: _Device, t: int, rng: np.random.Generator, kinds: tuple[str, ...], connected: bool | None
    ) -> tuple[int, int]:
        """A known station (preferring ``kinds``) that is / is not connected at ``t``; (station, iface)."""
        now = dict(dev.connected_at(t))
        cands = [
            i
            for i, st in enumerate(dev.stations)
            if st.kind in kinds and (connected is None or (i in now) == connected)
        ]
        if not cands:
            cands = [i for i in range(len(dev.stations)) if connected is None or (i in now) == connected]
        if not cands:
            cands = list(range(len(dev.stations)))
        si = cands[int(rng.integers(len(cands)))]
        st = dev.stations[si]
        return si, now.get(si, int(rng.random() < st.p_band1))

    def _deauth_flood(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        now = dev.connected_at(ep.start)
        if not now:
            now = [(i, int(rng.random() < st.p_band1)) for i, st in enumerate(dev.stations)]
        if rng.random() < 0.35 or len(now) <= 2:
            idx = rng.choice(len(now), size=min(len(now), int(rng.integers(1, 3))), replace=False)
            targets = [now[int(i)] for i in idx]
        else:
            targets = now
        pool = _ASUS_ATTACK_DISC if dev.vendor == "asus" else _OPENWRT_ATTACK_DISC
        weights = rng.dirichlet(np.full(len(pool), 0.6))
        rate = _loguniform(rng, 0.04, 0.8)  # deauth frames logged per second
        p_back = rng.uniform(0.2, 0.8)  # victims that try to rejoin
        n = max(10, int(rng.poisson(rate * ep.length)))
        times = np.sort(rng.uniform(ep.start, ep.start + ep.length - 10, n)).astype(np.int64)
        last = ep.start
        for t in times:
            si, iface = targets[int(rng.integers(len(targets)))]
            st = dev.stations[si]
            seq = pool[int(rng.choice(len(pool), p=weights))]
            w.lines(int(t), st.mac, iface, seq, scen)
            last = max(last, int(t))
            if rng.random() < p_back:
                back = int(t) + int(rng.integers(1, 9))
                if back < ep.start + ep.length:
                    w.connect(back, st.mac, iface, scen, st.aid, st.aid_form)
                    last = max(last, back + 1)
        ep.end = last + 1
        if len(targets) == 1:
            ep.entity_kind, ep.entity = "station", dev.stations[targets[0][0]].mac

    def _auth_bruteforce(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        n_att = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        pool = _ASUS_FAILS if dev.vendor == "asus" else _OPENWRT_FAILS
        weights = rng.dirichlet(np.full(len(pool), 0.7))
        last = ep.start
        macs = []
        for _ in range(n_att):
            mac = _new_mac(rng, self.used, None if rng.random() < 0.5 else _OUIS["attacker"])
            macs.append(mac)
            iface = int(rng.integers(2))
            gap = _loguniform(rng, 2.0, 20.0)
            t = ep.start + rng.uniform(0, min(60, ep.length / 4))
            aid = int(rng.integers(1, 12))
            while t < ep.start + ep.length - 15:
                if dev.vendor == "asus" and rng.random() < 0.15:
                    codes = TEMPLATE_CODES["w_auth_fail"]
                    end = w.lines(t, mac, iface, (("w_auth_fail", codes[int(rng.integers(len(codes)))]),), scen)
                else:
                    end = w.failed_join(t, mac, iface, scen, aid, weights, aid_form=rng.random() < 0.5)
                last = max(last, int(end))
                t = end + gap * rng.uniform(0.5, 1.5)
        ep.end = last + 1
        if n_att == 1:
            ep.entity_kind, ep.entity = "station", macs[0]

    def _reconnect_loop(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        si, iface = self._target_station(dev, ep.start, rng, ("iot", "tv", "laptop"), connected=True)
        st = dev.stations[si]
        period = rng.uniform(3, 20)
        local_share = rng.uniform(0, 0.4)
        t = float(ep.start)
        stop = ep.start + ep.length - 5
        while t < stop:
            w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
            up = period * rng.uniform(0.3, 0.7)
            w.lines(t + up, st.mac, iface, w.leave_seq("local" if rng.random() < local_share else "leave"), scen)
            t += period * rng.uniform(0.8, 1.2)
        w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)  # ... and finally it stays
        ep.end = int(t) + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _mac_flood(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        n = int(_loguniform(rng, 30, 400))
        p_rand = rng.uniform(0.7, 0.98)
        p_iface = rng.uniform(0.1, 0.9)
        p_assoc = rng.uniform(0.3, 0.9)
        arrivals = np.sort(rng.uniform(ep.start, ep.start + ep.length - 30, n))
        last = ep.start
        for t in arrivals:
            mac = _new_mac(rng, self.used, None if rng.random() < p_rand else _OUIS["phone"])
            iface = int(rng.random() < p_iface)
            aid = int(rng.integers(1, 60))
            if dev.vendor == "asus":
                if rng.random() < dev.p_wlc:
                    w.lines(t, mac, iface, (("w_auth", 0),), scen)
                if rng.random() < p_assoc:
                    if rng.random() < 0.15 and rng.random() < dev.p_wlc:
                        w.lines(t, mac, iface, (("w_assoc_fail", 17),), scen)
                        end = t
                    else:
                        w.pre_join(t, mac, iface, scen, aid, aid_form=rng.random() < 0.5)
                        end = t + rng.uniform(1, 20)
                        w.lines(end, mac, iface, w.leave_seq("leave"), scen)
                else:
                    end = t + rng.uniform(1, 10)
                    w.lines(end, mac, iface, (("w_deauth_ind", 2 if rng.random() < 0.5 else 3),), scen)
            else:
                if rng.random() < p_assoc:
                    w.pre_join(t, mac, iface, scen, aid)
                    end = t + rng.uniform(1, 20)
                    seq = (("h_eapol_to", 0), ("h_deauth_local", 0)) if rng.random() < 0.3 else (("h_disassoc", 0),)
                    w.lines(end, mac, iface, seq, scen)
                else:
                    w.log.add(t, dev, "h_auth", scen, mac, iface=dev.ifaces[iface])
                    end = t + rng.uniform(1, 10)
                    w.lines(end, mac, iface, (("h_deauth_idle", 0),), scen)
            last = max(last, int(end))
        ep.end = last + 1

    def _radio_fault(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        radio = int(rng.integers(2))
        keys = (
            ("k_fatal", "k_psm", "k_trap")
            if dev.vendor == "asus"
            else ("k_hwrestart", "k_ath_crash" if dev.driver == "ath10k" else "k_mt_error")
        )
        weights = rng.dirichlet(np.full(len(keys), 0.8))
        gap = _loguniform(rng, 5, 45)
        p_switch = rng.uniform(0.0, 0.25)
        p_drop = rng.uniform(0.0, 0.6)  # a reset that kicks the radio's stations, which rejoin
        stop = ep.start + ep.length - 2
        t = ep.start + rng.uniform(0, 5)
        last = ep.start
        while t < stop:
            _radio_line(self.log, dev, rng, t, radio, scen, keys, weights)
            if rng.random() < p_switch:
                if dev.vendor == "asus":
                    self.log.add(
                        t + 1,
                        dev,
                        "a_adjusted" if rng.random() < 0.5 else "a_chanspec",
                        scen,
                        iface=dev.ifaces[radio],
                        chanspec=_CHANSPECS[radio][int(rng.integers(3))],
                    )
                else:
                    self.log.add(
                        t + 1,
                        dev,
                        "c_csa_start",
                        scen,
                        iface=dev.ifaces[radio],
                        freq=_FREQS[radio][int(rng.integers(3))],
                        cf1=_FREQS[radio][0] + 30,
                    )
                    self.log.add(
                        t + 1,
                        dev,
                        "c_csa_done",
                        scen,
                        iface=dev.ifaces[radio],
                        freq=_FREQS[radio][int(rng.integers(3))],
                    )
            if rng.random() < p_drop:
                for si, iface in dev.connected_at(int(t)):
                    back = t + rng.uniform(5, 40)
                    if iface == radio and back < stop:
                        st = dev.stations[si]
                        w.connect(back, st.mac, iface, scen, st.aid, st.aid_form)
                        last = max(last, int(back) + 1)
            last = max(last, int(t) + 2)
            t += gap * rng.uniform(0.3, 1.7)
        ep.end = last + 1

    def _silence(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        ep.end = ep.start + ep.length
        self.removals.append((dev.index, "", ep.start, ep.end, True))

    def _reboot_wave(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        down = ep.start
        up = down + ep.params["gap"]
        log = self.log
        if dev.vendor == "asus":
            for r in (0, 1):
                log.add(
                    up, dev, "k_boot_wl", scen, radio=dev.radios[r], chip=("6755", "43684")[r], ver="17.10.188.6401"
                )
            dev.cron_pid = int(rng.integers(300, 3000))
            log.add(
                up + int(rng.integers(30, 60)),
                dev,
                "cr_disparity",
                scen,
                n=int(rng.integers(10**5, 4 * 10**6)),
                pid=dev.cron_pid,
            )
            t = up + int(rng.integers(60, 100))
            log.add(t, dev, "wd_periodic", scen, hm=f"{dev.wd_sod // _HOUR}:{(dev.wd_sod % _HOUR) // 60:02d}")
            log.add(t + 7, dev, "wd_retrieve", scen)
            log.add(t + 7, dev, "wd_noneed", scen)
        else:
            log.add(up, dev, "k_boot_linux", scen, kver="5.15.167")
            log.add(up + 18, dev, "n_up", scen, net="lan")
            log.add(up + 24, dev, "p_init", scen)
            for r in (0, 1):
                log.add(up + 26 + r, dev, "c_ap_enabled", scen, iface=dev.ifaces[r])
        last = up + 110
        for si, iface in dev.connected_at(down):
            st = dev.stations[si]
            t = up + 15 + rng.uniform(0, ep.params["span"])
            w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
            last = max(last, int(t) + 1)
        ep.end = last + 1
        self.removals.append((dev.index, "", down, up, False))

    def _mistyped_passphrase(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        si, iface = self._target_station(dev, ep.start, rng, ("phone", "laptop", "visitor"), connected=False)
        st = dev.stations[si]
        t = float(ep.start)
        for _ in range(ep.params["fails"]):
            t = w.failed_join(t, st.mac, iface, scen, st.aid, aid_form=st.aid_form) + rng.uniform(8, 40)
        w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
        ep.end = int(t) + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _iot_gtk_deauth(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        ticks = dev.rekey_ticks(self.clock.horizon)
        ticks = ticks[(ticks >= ep.start) & (ticks < ep.start + _HOUR)]
        tick = int(ticks[0]) if len(ticks) else ep.start
        si, iface = self._target_station(dev, tick, rng, ("iot",), connected=True)
        st = dev.stations[si]
        t0 = tick + int(rng.integers(3, 7))
        self.log.add(t0, dev, "h_gtk_fail", scen, st.mac, iface=dev.ifaces[iface])
        t1 = t0 + int(rng.integers(4, 7))
        w.lines(t1, st.mac, iface, w.leave_seq("local"), scen)
        t2 = t1 + int(_loguniform(rng, 10, 300))
        w.connect(t2, st.mac, iface, scen, st.aid, st.aid_form)
        ep.start, ep.end = tick, t2 + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _boot_dfs(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        freq, chan, seg0, cf1, spec = _DFS_CHANNELS[int(rng.integers(len(_DFS_CHANNELS)))]
        iface = dev.ifaces[1]
        t = ep.start + 1
        cac = 60
        if dev.vendor == "asus":
            if rng.random() < 0.5:
                self.log.add(t - 1, dev, "a_chanspec", scen, iface=iface, chanspec=spec)
            self.log.add(t, dev, "a_cac_start", scen, iface=iface, chanspec=spec)
            self.log.add(t + cac, dev, "a_cac_done", scen, iface=iface, chanspec=spec)
            self.log.add(t + cac + 1, dev, "a_adjusted", scen, iface=iface, chanspec=spec)
        else:
            if rng.random() < 0.5:
                self.log.add(t - 1, dev, "c_csa_start", scen, iface=iface, freq=freq, cf1=cf1)
            self.log.add(t, dev, "c_cac_start", scen, iface=iface, freq=freq, chan=chan, seg0=seg0, cac=cac)
            self.log.add(t + cac, dev, "c_cac_done", scen, iface=iface, freq=freq, cf1=cf1)
            self.log.add(t + cac + 1, dev, "c_ap_enabled", scen, iface=iface)
        ep.start, ep.end = ep.start, t + cac + 2
