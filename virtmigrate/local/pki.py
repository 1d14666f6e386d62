"""Certificates for the local control plane, made with openssl: a CA, the API server's serving
certificate (127.0.0.1, localhost), client certificates and the service-account signing key."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ensure_ca(d: Path) -> None:
    if (d / "ca.crt").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-subj", "/CN=virtmigrate-local-ca")


def ensure_cert(d: Path, name: str, subject: str, *, san: str | None = None) -> tuple[Path, Path]:
    """A key and certificate signed by the CA in `d`; `subject` like '/O=system:masters/CN=admin'."""
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    if crt.exists() and key.exists():
        return crt, key
    csr, ext = d / f"{name}.csr", d / f"{name}.ext"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject)
    usage = "serverAuth" if san else "clientAuth"
    ext.write_text(f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "3650", "-out", str(crt), "-extfile", str(ext))
    csr.unlink()
    ext.unlink()
    return crt, key


def ensure_sa_keys(d: Path) -> tuple[Path, Path]:
    key, pub = d / "sa.key", d / "sa.pub"
    if not key.exists():
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("rsa", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub
