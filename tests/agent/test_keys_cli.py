"""`spbu keys ca | station-cert | server-cert | broker-config`: files that openssl-free checks
(cryptography) and mosquitto accept; bad input is one clear error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.cli.main import main
from agent.cli.provision import make_station_key_and_csr


def cn(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_ca_and_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    assert main(["keys", "ca", "--out", str(tmp_path / "ca")]) == 0
    assert main(["keys", "station-cert", "--ca", str(tmp_path / "ca"), "--station", "34.401.01",
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["keys", "station-cert", "--ca", str(tmp_path / "ca"), "--service", "hq-collector",
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["keys", "server-cert", "--ca", str(tmp_path / "ca"), "--host", "localhost", "--host", "127.0.0.1",
                 "--out", str(tmp_path / "out")]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    for name in ("34.401.01", "hq-collector", "localhost"):
        cert = x509.load_pem_x509_certificate((tmp_path / "out" / f"{name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cn(tmp_path / "out" / f"{name}.crt") == name
        assert (tmp_path / "out" / f"{name}.key").stat().st_mode & 0o777 == 0o600


def test_station_cert_from_the_provisioned_csr_keeps_the_station_key(tmp_path: Path) -> None:
    assert main(["keys", "ca", "--out", str(tmp_path / "ca")]) == 0
    (tmp_path / "keys").mkdir()
    (tmp_path / "certs").mkdir()
    key_path, csr = make_station_key_and_csr("34.401.07", tmp_path / "keys", tmp_path / "certs", force=False)
    assert main(["keys", "station-cert", "--ca", str(tmp_path / "ca"), "--station", "34.401.07", "--csr", str(csr),
                 "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "34.401.07.key").exists()
    cert = x509.load_pem_x509_certificate((tmp_path / "out" / "34.401.07.crt").read_bytes())
    from cryptography.hazmat.primitives import serialization

    station_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(station_key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == station_key.public_key()
    # The request is for 34.401.07: it does not make a certificate for another station.
    assert main(["keys", "station-cert", "--ca", str(tmp_path / "ca"), "--station", "34.401.08", "--csr", str(csr),
                 "--out", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize("argv, message", [
    (["keys", "station-cert", "--ca", "{tmp}/nope", "--station", "34.401.01", "--out", "{tmp}/o"], "no usable ca.key"),
    (["keys", "station-cert", "--ca", "{tmp}/ca", "--station", "bad id!", "--out", "{tmp}/o"], "neither a station"),
    (["keys", "station-cert", "--ca", "{tmp}/ca", "--out", "{tmp}/o"], "exactly one of"),
    (["keys", "ca", "--out", "{tmp}/ca"], "exists"),
    (["keys", "broker-config", "--station", "1", "--hq-host", "h", "--ca", "{tmp}/ca/ca.crt", "--cert",
      "{tmp}/ca/ca.crt", "--key", "{tmp}/ca/ca.key", "--ws-cert", "{tmp}/ca/ca.crt", "--ws-key", "{tmp}/ca/ca.key",
      "--out", "{tmp}/b"], "must look like"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                     message: str) -> None:
    assert main(["keys", "ca", "--out", str(tmp_path / "ca")]) == 0
    capsys.readouterr()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_broker_config_renders_every_placeholder(tmp_path: Path) -> None:
    assert main(["keys", "ca", "--out", str(tmp_path / "ca")]) == 0
    assert main(["keys", "station-cert", "--ca", str(tmp_path / "ca"), "--station", "34.401.01",
                 "--out", str(tmp_path / "c")]) == 0
    assert main(["keys", "broker-config", "--station", "34.401.01", "--hq-host", "hq.example", "--ca",
                 str(tmp_path / "ca" / "ca.crt"), "--cert", str(tmp_path / "c" / "34.401.01.crt"), "--key",
                 str(tmp_path / "c" / "34.401.01.key"), "--ws-cert", str(tmp_path / "c" / "34.401.01.crt"),
                 "--ws-key", str(tmp_path / "c" / "34.401.01.key"), "--out", str(tmp_path / "b")]) == 0
    conf = (tmp_path / "b" / "spbu.conf").read_text()
    assert not (tmp_path / "b" / "dashboard.password").exists()  # shown once, never stored in clear
    assert "@" not in conf.replace("at-sign", "")
    assert "topic spbu/v1/34.401.01/tx out 1" in conf and "address hq.example:8883" in conf
    assert "dashboard:" in (tmp_path / "b" / "dashboard.passwd").read_text()
