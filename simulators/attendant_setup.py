"""The attendant's side of a simulated station (`spbu demo --attendant`, the browser tests):
a test CA and the station's TLS server certificate, one device per pair of pumps, one
attendant with a fresh PIN, and the broker listener that serves the page over TLS."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from agent.attendant.config import AttendantConfig, Person, hash_pin
from agent.attendant.files import attendant_dir
from agent.page_server import PageServer
from hq import pki
from simulators.broker import AttendantListener


@dataclass
class AttendantSetup:
    station: str
    ca_cert: Path
    listener: AttendantListener
    config: AttendantConfig
    number: str
    pin: str
    page: PageServer

    def start(self) -> None:
        self.page.start()

    def close(self) -> None:
        self.page.close()

    @property
    def page_url(self) -> str:
        return f"https://127.0.0.1:{self.page.port}/?station={self.station}&mqtt={self.listener.port}"

    def device_key(self, device: str) -> str:
        return self.listener.devices[device][1]

    def url(self, device: str) -> str:
        """The enrolment link: the page takes the device's name and key from the fragment."""
        return f"{self.page_url}#device={device}&key={self.device_key(device)}"


def make_attendant_setup(station: str, pumps: list[int], workdir: Path, number: str = "01",
                         name: str = "Siti") -> AttendantSetup:
    tls = workdir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    if not (tls / "ca.crt").exists():
        pki.make_ca(tls, "SPBU demo CA")
    if not (tls / "127.0.0.1.crt").exists():
        pki.issue(tls, tls, "127.0.0.1", server_names=("127.0.0.1", "localhost"))
    devices = {f"pulau-{i // 2 + 1}": (tuple(pumps[i:i + 2]), secrets.token_urlsafe(18))
               for i in range(0, len(pumps), 2)}
    listener = AttendantListener(station, devices, tls / "127.0.0.1.crt", tls / "127.0.0.1.key")
    page = PageServer(attendant_dir(), tls / "127.0.0.1.crt", tls / "127.0.0.1.key", host="127.0.0.1", port=0)
    pin = f"{secrets.randbelow(10**6):06d}"
    config = AttendantConfig(people={number: Person(number, name, hash_pin(pin))},
                             devices={d: p for d, (p, _) in devices.items()})
    return AttendantSetup(station, tls / "ca.crt", listener, config, number, pin, page)


def describe(setup: AttendantSetup, lang: str) -> str:
    devices = "\n".join(f"    {name} (pompa {', '.join(map(str, pumps))}): {setup.url(name)}"
                        if lang == "id" else f"    {name} (pumps {', '.join(map(str, pumps))}): {setup.url(name)}"
                        for name, (pumps, _) in setup.listener.devices.items())
    if lang == "id":
        return (f"Halaman petugas: {setup.page_url}\n"
                f"  perangkat (buka tautannya sekali untuk mendaftar):\n{devices}\n"
                f"  petugas nomor {setup.number}, PIN {setup.pin}\n"
                f"  sertifikat CA untuk dipercaya ponsel: {setup.ca_cert}\n  Ctrl-C untuk berhenti")
    return (f"Attendant page: {setup.page_url}\n"
            f"  devices (open the link once to enrol):\n{devices}\n"
            f"  attendant number {setup.number}, PIN {setup.pin}\n"
            f"  CA certificate for the phone to trust: {setup.ca_cert}\n  Ctrl-C to stop")
