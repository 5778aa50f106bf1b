"""A real Keystone on loopback for the ``--auth keystone`` tests.

Keystone runs from its own virtualenv (``.venv-keystone``, made by the
Makefile's keystone step from ``tools/keystone-constraints.txt``) on a
SQLite database in a work folder: ``keystone-manage db_sync``,
``fernet_setup``, ``credential_setup`` and ``bootstrap`` (admin project,
user and the admin/member/reader roles), then
``tests/api/keystone_wsgi.py`` serves it. :meth:`KeystoneServer.provision`
adds what a cloud running kumonet has: the ``service`` project with the
``neutron`` service user (role ``service``, as Neutron's
``[keystone_authtoken]`` uses), tenant projects with a member user each, and
the ``network`` service whose endpoints point at kumonet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KEYSTONE_VENV = Path(os.environ.get("KUMONET_KEYSTONE_VENV", REPO / ".venv-keystone"))
REGION = "RegionOne"
DOMAIN = "Default"
ADMIN_PASSWORD = "admin-secret"
SERVICE_PASSWORD = "neutron-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keystone_missing() -> str | None:
    """Why no Keystone can run here, or None."""
    if not (KEYSTONE_VENV / "bin" / "keystone-manage").exists():
        return f"no Keystone virtualenv at {KEYSTONE_VENV} (`make deps` makes it)"
    return None


@dataclass(frozen=True, slots=True)
class KeystoneUser:
    """A user with a role on one project, and how to log in as it."""

    name: str
    password: str
    project_name: str
    user_id: str
    project_id: str

    def auth(self, auth_url: str) -> dict[str, str]:
        """openstacksdk's ``auth`` dict for password auth scoped to the project."""
        return {"auth_url": auth_url, "username": self.name, "password": self.password,
                "project_name": self.project_name, "user_domain_name": DOMAIN,
                "project_domain_name": DOMAIN}


class KeystoneServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth_url = self.url + "/v3"
        self.conf = workdir / "keystone.conf"
        self.log = workdir / "keystone.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        work = self.workdir
        return f"""[DEFAULT]
log_file = {work / 'keystone-app.log'}
[database]
connection = sqlite:///{work / 'keystone.db'}
[token]
provider = fernet
[fernet_tokens]
key_repository = {work / 'fernet-keys'}
[fernet_receipts]
key_repository = {work / 'fernet-receipts'}
[credential]
key_repository = {work / 'credential-keys'}
[identity]
# bcrypt's minimum: each password login would otherwise cost ~0.25 s of CPU
password_hash_rounds = 4
"""

    def _manage(self, *commands: list[str]) -> None:
        """``keystone-manage`` commands, run at once: each spends most of its
        ~2 s importing Keystone, and these touch different files."""
        manage = [str(KEYSTONE_VENV / "bin" / "keystone-manage"), "--config-file",
                  str(self.conf)]
        with open(self.log, "ab") as log:
            procs = [subprocess.Popen([*manage, *args], stdout=log, stderr=subprocess.STDOUT,
                                      env=self._env()) for args in commands]
            codes = [proc.wait(timeout=300) for proc in procs]
        if any(codes):
            raise RuntimeError(f"keystone-manage {commands} exited {codes}:\n"
                               + self.log.read_text()[-4000:])

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.conf)
        # Keystone's own libraries warn on import; nothing here to act on.
        env["PYTHONWARNINGS"] = "ignore"
        return env

    def start(self) -> None:
        self.conf.write_text(self._config())
        owner = ["--keystone-user", "root", "--keystone-group", "root"]
        self._manage(["db_sync"], ["fernet_setup", *owner], ["credential_setup", *owner])
        self._manage(["bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                      "--bootstrap-admin-url", self.auth_url,
                      "--bootstrap-public-url", self.auth_url,
                      "--bootstrap-internal-url", self.auth_url,
                      "--bootstrap-region-id", REGION])
        log = open(self.log, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [str(KEYSTONE_VENV / "bin" / "python"), str(Path(__file__).with_name(
                "keystone_wsgi.py")), "127.0.0.1", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(), cwd=self.workdir)
        log.close()
        # Readiness: bounded polling, not a timing assertion.
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError("keystone exited:\n" + self.log.read_text()[-4000:])
            try:
                with urllib.request.urlopen(self.auth_url, timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("keystone did not start:\n" + self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def admin_auth(self) -> dict[str, str]:
        return {"auth_url": self.auth_url, "username": "admin", "password": ADMIN_PASSWORD,
                "project_name": "admin", "user_domain_name": DOMAIN,
                "project_domain_name": DOMAIN}

    def connect(self, auth: dict[str, str]) -> Any:
        import openstack

        return openstack.connection.Connection(auth=auth, region_name=REGION,
                                               identity_interface="public")


@dataclass(frozen=True, slots=True)
class KeystoneCloud:
    """What :meth:`provision` made: who logs in, and the service options."""

    keystone: KeystoneServer
    network_url: str
    admin: KeystoneUser
    service: KeystoneUser
    tenants: tuple[KeystoneUser, ...]
    readers: tuple[KeystoneUser, ...]
    # Nova's service user: role ``service`` (no admin) in the service project.
    nova: KeystoneUser

    def authtoken_section(self) -> str:
        """The ``[keystone_authtoken]`` section as a Neutron server has it."""
        return f"""[keystone_authtoken]
www_authenticate_uri = {self.keystone.url}
auth_url = {self.keystone.url}
auth_type = password
project_domain_name = {DOMAIN}
user_domain_name = {DOMAIN}
project_name = service
username = neutron
password = {SERVICE_PASSWORD}
region_name = {REGION}
service_token_roles_required = true
"""


def provision(keystone: KeystoneServer, network_url: str, tenants: int = 2) -> KeystoneCloud:
    """Projects, users, roles and the ``network`` catalog entry for kumonet."""
    conn = keystone.connect(keystone.admin_auth())
    identity = conn.identity
    domain = identity.find_domain("default")
    # bootstrap makes admin/member/reader (and, since 2024.2, service).
    roles = {name: identity.find_role(name) or identity.create_role(name=name)
             for name in ("admin", "member", "reader", "service")}

    def user(name: str, password: str, project_name: str, role: str) -> KeystoneUser:
        project = identity.find_project(project_name, domain_id=domain.id) or \
            identity.create_project(name=project_name, domain_id=domain.id)
        made = identity.create_user(name=name, password=password, domain_id=domain.id,
                                    default_project_id=project.id)
        identity.assign_project_role_to_user(project, made, roles[role])
        return KeystoneUser(name, password, project_name, made.id, project.id)

    service_user = user("neutron", SERVICE_PASSWORD, "service", "service")
    admin_user = identity.find_user("admin", domain_id=domain.id, ignore_missing=False)
    admin_project = identity.find_project("admin", domain_id=domain.id, ignore_missing=False)
    made_tenants = tuple(user(f"tenant{i}", f"tenant{i}-secret", f"project{i}", "member")
                         for i in range(1, tenants + 1))
    readers = (user("auditor", "auditor-secret", "project1", "reader"),)
    nova = user("nova", "nova-secret", "service", "service")
    service = identity.create_service(name="neutron", type="network")
    for interface in ("public", "internal", "admin"):
        identity.create_endpoint(service_id=service.id, interface=interface,
                                 url=network_url, region_id=REGION)
    conn.close()
    return KeystoneCloud(
        keystone=keystone, network_url=network_url,
        admin=KeystoneUser("admin", ADMIN_PASSWORD, "admin", admin_user.id, admin_project.id),
        service=service_user,
        tenants=made_tenants, readers=readers, nova=nova)


def issue_token(keystone: KeystoneServer, user: KeystoneUser) -> str:
    """A fresh project-scoped token for ``user`` (POST /v3/auth/tokens)."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.name, "password": user.password, "domain": {"name": DOMAIN}}}},
        "scope": {"project": {"name": user.project_name, "domain": {"name": DOMAIN}}}}}
    request = urllib.request.Request(keystone.auth_url + "/auth/tokens",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["X-Subject-Token"])


def issue_system_token(keystone: KeystoneServer, user: KeystoneUser) -> str:
    """A system-scoped token (``scope: {"system": {"all": true}}``); bootstrap
    gives the admin user its system role."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.name, "password": user.password, "domain": {"name": DOMAIN}}}},
        "scope": {"system": {"all": True}}}}
    request = urllib.request.Request(keystone.auth_url + "/auth/tokens",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["X-Subject-Token"])


def application_credential_token(keystone: KeystoneServer, credential_id: str,
                                 secret: str) -> tuple[str, str]:
    """A token from an application credential, and its ``expires_at`` (which
    Keystone caps at the credential's own expiry)."""
    body = {"auth": {"identity": {"methods": ["application_credential"],
                                  "application_credential": {"id": credential_id,
                                                             "secret": secret}}}}
    request = urllib.request.Request(keystone.auth_url + "/auth/tokens",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
        return str(response.headers["X-Subject-Token"]), str(answer["token"]["expires_at"])


def revoke_token(keystone: KeystoneServer, admin_token: str, token: str) -> None:
    request = urllib.request.Request(keystone.auth_url + "/auth/tokens", method="DELETE",
                                     headers={"X-Auth-Token": admin_token,
                                              "X-Subject-Token": token})
    with urllib.request.urlopen(request, timeout=30):
        pass


class KumonetServer:
    """``kumonet-server --auth keystone`` as a process, its INI being
    ``etc/kumonet.ini`` with the given ``[keystone_authtoken]`` section."""

    def __init__(self, workdir: Path, port: int, authtoken: str) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ini = workdir / "kumonet.ini"
        self.log = workdir / "kumonet-server.log"
        base = (REPO / "etc" / "kumonet.ini").read_text()
        # etc/kumonet.ini ends with a commented-out [keystone_authtoken].
        self.ini.write_text(base.split("[keystone_authtoken]")[0] + authtoken)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "kumonet-server"), "--auth", "keystone",
             "--listen", f"127.0.0.1:{self.port}", "--store",
             f"sqlite:///{self.workdir / 'kumonet.db'}", "--config", str(self.ini)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError("kumonet-server exited:\n" + self.log.read_text()[-4000:])
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("kumonet-server did not start:\n" + self.log.read_text()[-4000:])

    def stop(self) -> int | None:
        """Stops the server; its exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        code: int | None = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return code


class Memcached:
    """A memcached of the test's own on a loopback port (keystonemiddleware's
    shared token cache when ``memcached_servers`` is set)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(self.port),
                                      "-U", "0", "-m", "16", *user],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"memcached exited {self.proc.returncode}")
            try:
                self.items()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("memcached did not start")

    def items(self) -> int:
        """How many items it holds (``stats`` curr_items)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"stats\r\n")
            answer = b""
            while not answer.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        for line in answer.decode().splitlines():
            if line.startswith("STAT curr_items "):
                return int(line.split()[2])
        raise RuntimeError(f"no curr_items in memcached stats: {answer[:200]!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None
