"""The command line's grammar (argparse), kept apart from what the commands do."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from .. import __version__
from ..client import DEFAULT_TIMEOUT
from . import _commands
from ._demo import DEFAULT_FAULT_RATE, demo_command
from ._exit import describe
from ._provision import DEFAULT_CONCURRENCY, provision_command

__all__ = ["ArgumentsError", "build_parser"]

_DESCRIPTION = """\
Bulk provisioning and everyday tasks for the Conduit v2 and Link APIs.

Tokens come from the environment (CONDUIT_TOKEN for the organization,
CONDUIT_LINK_TOKEN for the Link APP) or from --token-file, a file of
CONDUIT_TOKEN=... lines (or a single token) that only you can read.
Tokens are never printed, except by 'companies token'.
"""

_EPILOG = """\
examples:
  conduit-async demo
  conduit-async provision companies clients.csv --out results.jsonl
  conduit-async provision companies clients.csv --resume results.jsonl
  conduit-async provision workspaces ws.jsonl --clone-dashboard 1 --out ws-results.jsonl
  conduit-async dashboards share 4 --ext-id crm1

"""


class ArgumentsError(Exception):
    """A command line argparse refuses; `parser` is the (sub)command's, for its usage line."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """Raises `ArgumentsError` instead of printing and exiting, so that `main` tells the
    error as the command's other errors are told (as JSON with `--json`)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(self, message)


def _whole_number(minimum: int, rule: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`; `rule` says so in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{rule}, not {value}")
        return value

    return parse


_positive_int = _whole_number(1, "must be at least 1")
_count = _whole_number(0, "must not be negative")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _add_globals(parser: argparse.ArgumentParser, *, inherited: bool) -> None:
    """The options every API command takes, before or after the command name.

    On subcommands their default is SUPPRESS, so an option given before the
    command name is not reset by the subcommand's own default.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if inherited else value

    group = parser.add_argument_group("connection options")
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help="v2 API base URL (default: $CONDUIT_BASE_URL or https://api.getconduit.app/v2/)",
    )
    group.add_argument(
        "--link-base-url",
        metavar="URL",
        default=default(None),
        help="Link API base URL (default: $CONDUIT_LINK_BASE_URL or the public one)",
    )
    group.add_argument(
        "--token-file",
        metavar="PATH",
        default=default(None),
        help="file with CONDUIT_TOKEN=... / CONDUIT_LINK_TOKEN=... lines or one token; "
        "must not be readable by group or others",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT),
        help=f"per-request timeout (default: {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        default=default(False),
        help="allow a plain-http base URL on a non-loopback host (tokens travel in clear)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output; errors as one JSON object on stderr",
    )
    group.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default(False),
        help="end a bulk run with the client's counters: requests by endpoint and status, "
        "retries by cause, 429 pauses, token fetches and cache hits",
    )


def _workspace_choice(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--workspace", type=_positive_int, metavar="ID", help="a sub-workspace, by id"
    )
    which.add_argument("--ext-id", metavar="X", help="a sub-workspace, by your ext_id")


def _company_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", metavar="N", help="the company's name")
    parser.add_argument(
        "--page-enabled",
        action=argparse.BooleanOptionalAction,
        help="turn its Company Page on (or off with --no-page-enabled)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _add_globals(common, inherited=True)
    parser = _Parser(
        prog="conduit-async",
        description=_DESCRIPTION,
        epilog=_EPILOG + describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_globals(parser, inherited=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # provision -------------------------------------------------------------------
    provision = commands.add_parser(
        "provision", help="create or update many companies or workspaces from a file"
    )
    kinds = provision.add_subparsers(dest="kind", metavar="KIND", required=True)
    batch = _Parser(add_help=False)
    batch.add_argument("file", metavar="FILE", help="CSV or JSON Lines file, '-' for stdin")
    batch.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="input format (default: from the extension .csv/.jsonl/.ndjson, else sniffed)",
    )
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help=f"rows in flight at once (default: {DEFAULT_CONCURRENCY})",
    )
    batch.add_argument(
        "--out", metavar="PATH", help="write one JSON line per row as it finishes ('-': stdout)"
    )
    batch.add_argument(
        "--resume",
        metavar="PATH",
        help="skip the rows this results file records as done, and append to it",
    )
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    companies = kinds.add_parser(
        "companies",
        parents=[batch, common],
        help="ensure companies exist (columns id,name,page_enabled)",
        description="Create each company, or update it where it differs. CSV needs a header "
        "row with 'id' and optionally 'name' and 'page_enabled' (true/false, yes/no, 1/0); "
        "JSON Lines objects use the same keys.",
    )
    companies.set_defaults(handler=provision_command)
    workspaces = kinds.add_parser(
        "workspaces",
        parents=[batch, common],
        help="ensure workspaces exist by ext_id (columns name,ext_id)",
        description="Create each workspace whose ext_id does not exist yet and clone the "
        "template dashboards into it; report each copy's share URL.",
    )
    workspaces.add_argument(
        "--clone-dashboard",
        type=_positive_int,
        action="append",
        metavar="ID",
        help="organization dashboard to clone into each workspace (repeatable)",
    )
    workspaces.set_defaults(handler=provision_command)

    # workspaces --------------------------------------------------------------------
    ws = commands.add_parser("workspaces", help="list, create or disable sub-workspaces")
    ws_commands = ws.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws_list = ws_commands.add_parser("list", parents=[common], help="list the workspaces")
    ws_list.set_defaults(handler=_commands.workspaces_list)
    ws_create = ws_commands.add_parser("create", parents=[common], help="create a workspace")
    ws_create.add_argument("name", metavar="NAME")
    ws_create.add_argument("--ext-id", metavar="X", help="your own id for it")
    ws_create.set_defaults(handler=_commands.workspaces_create)
    ws_disable = ws_commands.add_parser(
        "disable", parents=[common], help="disable a workspace: its token stops working"
    )
    which = ws_disable.add_mutually_exclusive_group(required=True)
    which.add_argument("workspace_id", nargs="?", type=_positive_int, metavar="ID")
    which.add_argument("--ext-id", metavar="X", help="the workspace with this ext_id")
    ws_disable.set_defaults(handler=_commands.workspaces_disable)

    # dashboards --------------------------------------------------------------------
    db = commands.add_parser("dashboards", help="list, share or clone dashboards")
    db_commands = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    db_list = db_commands.add_parser(
        "list", parents=[common], help="the organization's dashboards, or a workspace's"
    )
    _workspace_choice(db_list)
    db_list.set_defaults(handler=_commands.dashboards_list)
    db_share = db_commands.add_parser(
        "share", parents=[common], help="print a dashboard's embeddable share URL"
    )
    db_share.add_argument("dashboard_id", type=_positive_int, metavar="ID")
    _workspace_choice(db_share)
    db_share.set_defaults(handler=_commands.dashboards_share)
    db_clone = db_commands.add_parser(
        "clone", parents=[common], help="copy an organization dashboard into a workspace"
    )
    db_clone.add_argument("dashboard_id", type=_positive_int, metavar="ID")
    db_clone.add_argument(
        "--workspace", type=_positive_int, metavar="ID", required=True, help="target workspace"
    )
    db_clone.add_argument("--name", metavar="N", help="name of the copy")
    db_clone.set_defaults(handler=_commands.dashboards_clone)

    # companies ---------------------------------------------------------------------
    co = commands.add_parser("companies", help="create, list, update or look up companies")
    co_commands = co.add_subparsers(dest="action", metavar="ACTION", required=True)
    co_list = co_commands.add_parser("list", parents=[common], help="list the companies")
    co_list.set_defaults(handler=_commands.companies_list)
    co_create = co_commands.add_parser("create", parents=[common], help="create a company")
    co_create.add_argument("company_id", metavar="ID")
    _company_fields(co_create)
    co_create.set_defaults(handler=_commands.companies_create)
    co_update = co_commands.add_parser(
        "update", parents=[common], help="change a company's name or Company Page"
    )
    co_update.add_argument("company_id", metavar="ID")
    _company_fields(co_update)
    co_update.set_defaults(handler=_commands.companies_update)
    co_get = co_commands.add_parser("get", parents=[common], help="show a company")
    co_get.add_argument("company_id", metavar="ID")
    co_get.set_defaults(handler=_commands.companies_get)
    co_token = co_commands.add_parser(
        "token", parents=[common], help="print a company token with life left (a secret!)"
    )
    co_token.add_argument("company_id", metavar="ID")
    co_token.set_defaults(handler=_commands.companies_token)

    # demo and fake server ------------------------------------------------------------
    demo = commands.add_parser(
        "demo",
        help="provision against an embedded fake server: no account needed",
        description="Start a fake Conduit in-process that injects faults (rate limits, "
        "server errors, connection resets, lost responses), provision companies and "
        "workspaces concurrently through them, then call company endpoints across a "
        "simulated token expiry. Everything lives in this process: the share URLs it "
        "prints stop working when the demo ends.",
    )
    demo.add_argument("--companies", type=_count, default=1000, metavar="N")
    demo.add_argument("--workspaces", type=_count, default=20, metavar="N")
    demo.add_argument("--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY, metavar="N")
    demo.add_argument(
        "--faults",
        type=_rate,
        default=DEFAULT_FAULT_RATE,
        metavar="RATE",
        help=f"share of requests given a fault, 0 to 1 (default: {DEFAULT_FAULT_RATE:g}; 0: none)",
    )
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    demo.set_defaults(handler=demo_command)
    fake = commands.add_parser(
        "fake-server",
        add_help=False,
        help="run the fake Conduit server in the foreground (--help for its options)",
    )
    fake.set_defaults(handler=None, passthrough=True)
    return parser
