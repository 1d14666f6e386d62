"""Where the API server is and who we are: a kubeconfig or the pod's service account, read without the
official client's loaders when the configuration is a plain one.

Fed by: KubeClient.from_kubeconfig / in_cluster / auto. Consumed by: KubeClient (the `Configuration`
protocol below is what it reads; the official client's `kubernetes.client.Configuration` satisfies it too).

Why: the agent and the launcher start for every migration, and their first API call (the target
launcher's first report, which lets the migration start) waited for `kubernetes.config`, which imports the
whole generated client: 0.15-0.8 s of CPU depending on the node's load. A static configuration — a server,
its CA (file or data, or insecure-skip-tls-verify), and a bearer token (literal or tokenFile) or a client
certificate and key (files or data) — is read here with json (or PyYAML for a YAML kubeconfig). Anything
else (exec and auth-provider plugins, basic auth, impersonation, proxies, TLS server names, several
kubeconfig files) returns None, and the caller falls back to the official loader, which handles it.

In-cluster: the service account's token file is re-read every TOKEN_REFRESH_S (bound tokens rotate), as
the official in-cluster loader does.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from virtmigrate.clock import Clock, RealClock

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REFRESH_S = 60.0
# Keys of a kubeconfig's user or cluster that only the official loader handles: their presence means
# "not a static configuration".
_USER_PLUGINS = ("exec", "auth-provider", "username", "password", "as", "as-groups", "as-uid", "as-user-extra")
_CLUSTER_EXTRAS = ("proxy-url", "tls-server-name", "disable-compression")


class Configuration(Protocol):
    """What KubeClient reads of a configuration (the official client's Configuration has all of it)."""

    @property
    def host(self) -> str: ...
    @property
    def verify_ssl(self) -> bool: ...
    @property
    def ssl_ca_cert(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...
    @property
    def refresh_api_key_hook(self) -> Any: ...  # None, or called with the configuration before each request

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str | None: ...


@dataclass
class ClientConfig:
    """A static configuration: server, trust, and one credential (a token or a client certificate)."""

    host: str
    verify_ssl: bool = True
    ssl_ca_cert: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str = ""
    token_file: str = ""            # re-read every TOKEN_REFRESH_S when set (`refresh_api_key_hook`)
    clock: Clock = field(default_factory=RealClock)
    _token_read_at: float | None = None

    @property
    def refresh_api_key_hook(self) -> Callable[[Any], None] | None:
        return _refresh_token if self.token_file else None

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str | None:
        if identifier != "authorization" or not self.token:
            return None
        return f"Bearer {self.token}"


def _refresh_token(cfg: ClientConfig) -> None:
    now = cfg.clock.now()
    if cfg._token_read_at is not None and now - cfg._token_read_at < TOKEN_REFRESH_S:
        return
    with contextlib.suppress(OSError):  # keep the last token: the API says 401 if it really expired
        cfg.token = Path(cfg.token_file).read_text().strip()
        cfg._token_read_at = now


def _data_file(b64: str, suffix: str) -> str:
    """A private temporary file holding base64 `b64` decoded (removed at exit), as the official loader does.
    `tempfile` is imported here: it loads shutil, random, bz2 and lzma (2.8 ms), and a pod's client (the
    in-cluster token, or a kubeconfig naming its files) never needs it, while every launcher's first report
    waits for the client's imports."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="virtmigrate-kube-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.standard_b64decode(b64))
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    return path


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # a YAML kubeconfig (kubectl writes them); ours are JSON

        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _named(items: Any, name: str, key: str) -> Mapping[str, Any] | None:
    for item in items or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get(key)
            return value if isinstance(value, Mapping) else {}
    return None


def compute_client_config(doc: Any, *, base: Path, context: str | None = None) -> ClientConfig | None:
    """The static configuration of kubeconfig `doc` (paths relative to `base`), or None when it needs
    the official loader (see the module docstring). Files named by data fields are written here."""
    if not isinstance(doc, Mapping):
        return None
    ctx = _named(doc.get("contexts"), context or str(doc.get("current-context") or ""), "context")
    if ctx is None:
        return None
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster") or ""), "cluster")
    user = _named(doc.get("users"), str(ctx.get("user") or ""), "user") if ctx.get("user") else {}
    if cluster is None or user is None or not cluster.get("server"):
        return None
    if any(k in user for k in _USER_PLUGINS) or any(k in cluster for k in _CLUSTER_EXTRAS):
        return None

    def path_of(value: Any) -> str:
        p = Path(str(value))
        return str(p if p.is_absolute() else base / p)

    cfg = ClientConfig(host=str(cluster["server"]).rstrip("/"),
                       verify_ssl=not bool(cluster.get("insecure-skip-tls-verify")))
    if cluster.get("certificate-authority-data"):
        cfg.ssl_ca_cert = _data_file(str(cluster["certificate-authority-data"]), ".crt")
    elif cluster.get("certificate-authority"):
        cfg.ssl_ca_cert = path_of(cluster["certificate-authority"])
    for key, attr, suffix in (("client-certificate", "cert_file", ".crt"), ("client-key", "key_file", ".key")):
        if user.get(f"{key}-data"):
            setattr(cfg, attr, _data_file(str(user[f"{key}-data"]), suffix))
        elif user.get(key):
            setattr(cfg, attr, path_of(user[key]))
    if user.get("token"):
        cfg.token = str(user["token"])
    elif user.get("tokenFile"):
        cfg.token_file = path_of(user["tokenFile"])
        _refresh_token(cfg)
    return cfg


def load_kubeconfig(path: str | None = None, *, context: str | None = None) -> ClientConfig | None:
    """The static configuration of kubeconfig `path` (default: $KUBECONFIG, else ~/.kube/config), or None
    when the official loader must read it (several files in $KUBECONFIG, plugins, ...) or it is missing."""
    if path is None:
        env = os.environ.get("KUBECONFIG", "")
        if os.pathsep in env:
            return None  # merged kubeconfigs: the official loader's rules
        path = env or str(Path.home() / ".kube" / "config")
    file = Path(path).expanduser()
    try:
        doc = _parse(file.read_text())
    except (OSError, ValueError):
        return None
    except Exception:  # a YAML error: the official loader reports it properly
        return None
    return compute_client_config(doc, base=file.parent, context=context)


def in_cluster_config(sa_dir: Path = SA_DIR) -> ClientConfig:
    """The pod's service account (what the official in-cluster loader reads); raises ConfigError when
    the pod has none."""
    from virtmigrate.errors import ConfigError

    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
    token = sa_dir / "token"
    if not host or not port or not token.is_file():
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset or no service-account token "
                          f"at {token}")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cfg = ClientConfig(host=f"https://{netloc}", ssl_ca_cert=str(sa_dir / "ca.crt"), token_file=str(token))
    _refresh_token(cfg)
    return cfg
