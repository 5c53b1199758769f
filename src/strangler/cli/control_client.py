"""Where the stage and status commands act: locally (the config file and its store) or remotely
(the admin API at `--admin URL`, with a token from STRANGLER_ADMIN_TOKEN). Both give the same
JSON shapes, so the commands print one way whichever door they used.

Errors: ControlError carries the message and the exit code (1 runtime, 2 refused or bad input).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Protocol

from strangler.config import load_config
from strangler.control.state import Override
from strangler.errors import ConfigError, StranglerError

TOKEN_ENV = "STRANGLER_ADMIN_TOKEN"


class ControlError(StranglerError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ControlClient(Protocol):
    def status(self) -> dict[str, Any]: ...

    def rollout(self, name: str) -> dict[str, Any]: ...

    def change(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def audit(self, unit: str | None, limit: int) -> list[dict[str, Any]]: ...

    def overrides(self) -> dict[str, Override]:
        """The runtime overrides in force, by rollout unit."""
        ...

    def close(self) -> None: ...


class LocalClient:
    """The config file's store, opened directly; the actor is `cli:<OS user>`."""

    def __init__(self, config_path: Path) -> None:
        from strangler.control.stores import open_store

        try:
            self.base = load_config(config_path)
        except ConfigError as exc:
            raise ControlError(str(exc), 2) from exc
        self.source = str(config_path)
        try:
            self.store = open_store(self.base.store, self.source)
        except StranglerError as exc:
            raise ControlError(str(exc), 1) from exc
        self.actor = f"cli:{getpass.getuser()}"

    def status(self) -> dict[str, Any]:
        from strangler.control.reports import status_report

        return status_report(self.store, self.base)

    def rollout(self, name: str) -> dict[str, Any]:
        from strangler.control.reports import rollout_report
        from strangler.control.service import ChangeRefused

        try:
            return rollout_report(self.store, self.base, name)
        except ChangeRefused as exc:
            raise ControlError(str(exc), 2) from exc

    def change(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        from strangler.config import FaultsConfig
        from strangler.control.changes import ChangeRequest, change_handler
        from strangler.control.service import ChangeRefused, ControlService

        weight, fault, for_s = body.get("weight"), body.get("fault"), body.get("for_s")
        try:
            request = ChangeRequest(
                str(body.get("reason", "")),
                weight=None if weight is None else float(weight),
                force=bool(body.get("force")),
                fault=None if fault is None else FaultsConfig.model_validate(fault),
                for_s=None if for_s is None else float(for_s),
                clear=bool(body.get("clear")),
            )
        except ValueError as exc:
            raise ControlError(f"bad fault: {exc}", 2) from exc
        try:
            handler = change_handler(action)
            change = handler(ControlService(self.store, self.base), name, request, actor=self.actor)
        except ChangeRefused as exc:
            raise ControlError(str(exc), 2) from exc
        return change.to_json()

    def audit(self, unit: str | None, limit: int) -> list[dict[str, Any]]:
        from strangler.control.service import ChangeRefused, ControlService

        try:
            changes = ControlService(self.store, self.base).audit(unit, limit=limit)
        except ChangeRefused as exc:
            raise ControlError(str(exc), 2) from exc
        return [change.to_json() for change in changes]

    def overrides(self) -> dict[str, Override]:
        return self.store.overrides()

    def close(self) -> None:
        self.store.close()


class RemoteClient:
    """The admin API of a running gateway."""

    def __init__(self, url: str) -> None:
        import httpx

        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ControlError(
                f"--admin needs a token in {TOKEN_ENV} (make one with `strangler token create`)",
                2,
            )
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ControlError(f"admin API unreachable: {exc}", 1) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.json().get("title")
            except ValueError:
                detail = response.text[:200]
            code = 1 if response.status_code >= 500 or response.status_code in (401, 403) else 2
            raise ControlError(f"{response.status_code}: {detail}", code)
        return response.json()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/v1/routes")
        return result

    def rollout(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/routes/{_quote(name)}")
        return result

    def change(self, name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/routes/{_quote(name)}/{action}"
        method = "PUT" if action == "weight" else "POST"
        payload = {key: value for key, value in body.items() if value is not None}
        result: dict[str, Any] = self._call(method, path, json=payload)
        return result

    def audit(self, unit: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if unit is not None:
            params["unit"] = unit
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/audit", params=params)
        return result

    def overrides(self) -> dict[str, Override]:
        """From the gateway's status report: one override per unit that has one (an override
        of a unit its YAML no longer has changes nothing, and is not in the report)."""
        found: dict[str, Override] = {}
        for item in self.status()["routes"]:
            value = item.get("override")
            if isinstance(value, dict) and item["unit"] not in found:
                try:
                    found[item["unit"]] = Override.from_json(item["unit"], value)
                except ValueError as exc:
                    message = f"the admin API answered an unreadable override: {exc}"
                    raise ControlError(message, 1) from exc
        return found

    def close(self) -> None:
        self._http.close()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def open_client(config: Path, admin: str | None) -> ControlClient:
    if admin:
        return RemoteClient(admin)
    return LocalClient(config)
