"""The everyday commands: list, create and disable workspaces; list, share and clone
dashboards; create, list, update and look up companies, or print a company's token.

Output is an aligned table for people, or JSON (`--json`) for scripts. No
output ever includes a token, except `companies token`, whose job is to print
one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..client import Conduit
from ..models import Company, Workspace
from ..resources.dashboards import WorkspaceDashboards
from ._config import UsageError, make_client

__all__ = [
    "companies_create",
    "companies_get",
    "companies_list",
    "companies_token",
    "companies_update",
    "dashboards_clone",
    "dashboards_list",
    "dashboards_share",
    "print_json",
    "print_table",
    "workspaces_create",
    "workspaces_disable",
    "workspaces_list",
]


def print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """Rows as aligned columns under a header; None shows as '-'."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [title for _, title in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        print(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _show(args: argparse.Namespace, data: Mapping[str, Any]) -> None:
    """One object: JSON, or `field: value` lines."""
    if args.json:
        print_json(data)
        return
    width = max(len(key) for key in data)
    for key, value in data.items():
        print(f"{key + ':':<{width + 1}} {_cell(value)}")


def _workspace(ws: Workspace) -> dict[str, Any]:
    return {"id": ws.id, "ext_id": ws.ext_id, "name": ws.name}  # never the token


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _company(company: Company) -> dict[str, Any]:
    return {  # never the token
        "id": company.id,
        "name": company.name,
        "created_at": _timestamp(company.created_at),
        "page_enabled": company.link_page.enabled,
        "page_url": company.link_page.url,
    }


def _dashboards(conduit: Conduit, args: argparse.Namespace) -> WorkspaceDashboards | None:
    """The dashboards of the workspace named by --workspace/--ext-id (None: the organization's)."""
    if args.workspace is None and args.ext_id is None:
        return None
    view = conduit.workspace(args.workspace, ext_id=args.ext_id)
    return view.dashboards


async def workspaces_list(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        workspaces = [_workspace(ws) for ws in await conduit.workspaces.list()]
    if args.json:
        print_json(workspaces)
    else:
        print_table(workspaces, [("id", "ID"), ("ext_id", "EXT_ID"), ("name", "NAME")])
    return 0


async def workspaces_create(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        ws = await conduit.workspaces.create(args.name, ext_id=args.ext_id)
    _show(args, _workspace(ws))
    return 0


async def workspaces_disable(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        workspace_id = args.workspace_id
        if workspace_id is None:
            workspace_id = (await conduit.workspace(ext_id=args.ext_id).get()).id
        await conduit.workspaces.disable(workspace_id)
    if args.json:
        print_json({"id": workspace_id, "disabled": True})
    else:
        print(f"Workspace {workspace_id} disabled: its token no longer works.")
    return 0


async def dashboards_list(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        reader = _dashboards(conduit, args) or conduit.dashboards
        dashboards = [{"id": d.id, "name": d.name} for d in await reader.list()]
    if args.json:
        print_json(dashboards)
    else:
        print_table(dashboards, [("id", "ID"), ("name", "NAME")])
    return 0


async def dashboards_share(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        reader = _dashboards(conduit, args) or conduit.dashboards
        url = await reader.share_url(args.dashboard_id)
    if args.json:
        print_json({"dashboard_id": args.dashboard_id, "url": url})
    else:
        print(url)
    return 0


async def dashboards_clone(args: argparse.Namespace) -> int:
    async with make_client(args, "org") as conduit:
        clone = await conduit.dashboards.clone(
            args.dashboard_id, workspace=args.workspace, name=args.name
        )
    _show(args, {"id": clone.id, "name": clone.name, "url": clone.url})
    return 0


async def companies_get(args: argparse.Namespace) -> int:
    async with make_client(args, "link") as conduit:
        company = await conduit.companies.get(args.company_id)
    _show(args, _company(company))
    return 0


async def companies_list(args: argparse.Namespace) -> int:
    async with make_client(args, "link") as conduit:
        companies = [_company(company) for company in await conduit.companies.list()]
    if args.json:
        print_json(companies)
    else:
        print_table(
            companies,
            [("id", "ID"), ("name", "NAME"), ("page_enabled", "PAGE"), ("created_at", "CREATED")],
        )
    return 0


async def companies_create(args: argparse.Namespace) -> int:
    async with make_client(args, "link") as conduit:
        company = await conduit.companies.create(
            args.company_id, name=args.name, page_enabled=args.page_enabled
        )
    _show(args, _company(company))
    return 0


async def companies_update(args: argparse.Namespace) -> int:
    if args.name is None and args.page_enabled is None:
        raise UsageError("nothing to update: give --name, --page-enabled or --no-page-enabled")
    async with make_client(args, "link") as conduit:
        company = await conduit.companies.update(
            args.company_id, name=args.name, page_enabled=args.page_enabled
        )
    _show(args, _company(company))
    return 0


async def companies_token(args: argparse.Namespace) -> int:
    """Print a freshly issued company token: the one command that shows a secret, on purpose.

    With `--json`, its `expires_at` too: the server's word, in the server's clock.
    """
    async with make_client(args, "link") as conduit:
        company = await conduit.companies.get(args.company_id)
    issued = company.api_token
    if args.json:
        print_json(
            {
                "id": company.id,
                "token": issued.token,
                "expires_at": _timestamp(issued.expires_at),
            }
        )
    else:
        print(issued.token)
    return 0
