"""The few Neutron v2.0 API calls the lab makes, as Nova makes them.

``vm add --network`` creates the port (``nova boot --nic net-id=...``);
``vm add --port`` binds a given port to the host; ``vm del`` deletes the
ports it created and unbinds the others. Plain HTTP with noauth (no project
header means admin, which ``binding:host_id`` needs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kumonet.lab.errors import LabError

DEFAULT_SERVER = "http://127.0.0.1:9696"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class PortInfo:
    id: str
    mac: str
    network_id: str
    fixed_ips: tuple[str, ...]


def _port_info(port: dict[str, Any]) -> PortInfo:
    return PortInfo(
        id=port["id"],
        mac=port["mac_address"],
        network_id=port["network_id"],
        fixed_ips=tuple(ip["ip_address"] for ip in port.get("fixed_ips", ())),
    )


class NeutronClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        # imported here: most lab commands never talk to the API, and aiohttp
        # is the slowest import of the CLI
        import aiohttp

        limit = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=limit) as session,
                session.request(method, f"{self.url}/v2.0{path}", json=body) as response,
            ):
                if response.status == 204:
                    return None
                text = await response.text()
                if response.status >= 400:
                    raise LabError(
                        f"{method} {self.url}/v2.0{path}: HTTP {response.status}: {text[:500]}"
                    )
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LabError(
                f"{method} {self.url}/v2.0{path}: {exc or type(exc).__name__}"
                " (is kumonet-server up?)"
            ) from exc

    async def find_network(self, name_or_id: str) -> dict[str, Any]:
        if _UUID.match(name_or_id):
            body = await self._call("GET", f"/networks/{name_or_id}")
            return dict(body["network"])
        body = await self._call("GET", f"/networks?name={name_or_id}")
        networks = body["networks"]
        if len(networks) != 1:
            raise LabError(f"{len(networks)} networks named {name_or_id!r}; give its id")
        return dict(networks[0])

    async def network_mtu(self, network_id: str) -> int | None:
        body = await self._call("GET", f"/networks/{network_id}")
        mtu = body["network"].get("mtu")
        return int(mtu) if mtu else None

    async def create_port(
        self, network_id: str, *, name: str, host: str, device_id: str
    ) -> PortInfo:
        body = await self._call(
            "POST",
            "/ports",
            {
                "port": {
                    "network_id": network_id,
                    "name": name,
                    "device_owner": "compute:nova",
                    "device_id": device_id,
                    "binding:host_id": host,
                }
            },
        )
        return _port_info(body["port"])

    async def show_port(self, port_id: str) -> PortInfo:
        body = await self._call("GET", f"/ports/{port_id}")
        return _port_info(body["port"])

    async def bind_port(self, port_id: str, *, host: str, device_id: str) -> PortInfo:
        body = await self._call(
            "PUT",
            f"/ports/{port_id}",
            {
                "port": {
                    "binding:host_id": host,
                    "device_owner": "compute:nova",
                    "device_id": device_id,
                }
            },
        )
        return _port_info(body["port"])

    async def unbind_port(self, port_id: str) -> None:
        await self._call(
            "PUT",
            f"/ports/{port_id}",
            {"port": {"binding:host_id": "", "device_owner": "", "device_id": ""}},
        )

    async def list_agents(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/agents")
        return list(body["agents"])

    async def delete_port(self, port_id: str) -> None:
        await self._call("DELETE", f"/ports/{port_id}")
