"""The CLI's side of the API: where the control plane is, and the token to use.

URL: ``DETENTE_URL``, else ``http://127.0.0.1:PORT`` from the data directory's
``detente.port``. Token: ``DETENTE_TOKEN``, else the data directory's ``admin.token``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from detente.control.home import data_dir


class ClientError(RuntimeError):
    pass


class Client:
    def __init__(self, home: Path | None = None) -> None:
        d = home or data_dir()
        url = os.environ.get("DETENTE_URL")
        if url is None:
            try:
                url = f"http://127.0.0.1:{(d / 'detente.port').read_text().strip()}"
            except OSError:
                raise ClientError(
                    f"detente is not running ({d}); start it with `detente up`"
                ) from None
        token = os.environ.get("DETENTE_TOKEN")
        if token is None and (d / "admin.token").exists():
            token = (d / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach detente at {self.http.base_url}: {e}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ClientError(f"{r.status_code}: {detail}")
        return r.json()
