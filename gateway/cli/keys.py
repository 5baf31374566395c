"""`spillover keys …` and `spillover teams …`: the admin API's keys and teams from a
terminal. Every command is one call to a running gateway (`--gateway`, an admin key in
`SPILLOVER_ADMIN_KEY`); a new secret is printed once, alone on stdout, so it can be piped."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gateway.cli.common import console

keys_app = typer.Typer(no_args_is_help=True, help="Keys kept as data: issue, rotate, revoke.")
teams_app = typer.Typer(no_args_is_help=True, help="Teams kept as data: limits and budgets.")

Gateway = Annotated[str, typer.Option(envvar="SPILLOVER_GATEWAY", help="The gateway's base URL.")]
AdminKey = Annotated[
    str, typer.Option(envvar="SPILLOVER_ADMIN_KEY", help="An admin key (viewers may list).")
]
AsJson = Annotated[bool, typer.Option("--json", help="The API's JSON instead of a table.")]
Rpm = Annotated[int | None, typer.Option(help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option(help="Tokens per minute.")]
Concurrent = Annotated[int | None, typer.Option(help="Requests in flight at once.")]
Daily = Annotated[float | None, typer.Option(help="Budget per calendar day, USD.")]
Monthly = Annotated[float | None, typer.Option(help="Budget per calendar month, USD.")]
NONE = "\u2013"  # an en dash: no value
DEFAULT_GATEWAY = "http://127.0.0.1:4000"
DEFAULT_ADMIN = "sk-spillover-admin"  # the demo's (`make run`)
out = Console(soft_wrap=True)


def _call(
    gateway: str, admin_key: str, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    try:
        answer = httpx.request(
            method,
            gateway.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]error[/red] cannot reach {gateway}: {type(exc).__name__}")
        raise typer.Exit(2) from None
    if answer.status_code >= 400:
        try:
            said = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            said = answer.text[:500]
        console.print(f"[red]error[/red] {answer.status_code}: {said}", highlight=False)
        raise typer.Exit(1)
    return answer.json()


def _limits(rpm: int | None, tpm: int | None, concurrent: int | None) -> dict[str, int]:
    given = {"rpm": rpm, "tpm": tpm, "concurrent": concurrent}
    return {k: v for k, v in given.items() if v is not None}


def _budget(daily: float | None, monthly: float | None, soft: bool) -> dict[str, Any]:
    given: dict[str, Any] = {"daily_usd": daily, "monthly_usd": monthly}
    budget = {k: v for k, v in given.items() if v is not None}
    if soft and budget:
        budget["mode"] = "soft"
    return budget


def _when(value: float | None) -> str:
    return NONE if value is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(value))


def _show_keys(keys: list[dict[str, Any]]) -> None:
    table = Table()
    for column in ("name", "team", "role", "state", "secret", "limits", "budget", "expires"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            k["name"], k["team"] or NONE, k["role"], k["state"], k["hint"],
            json.dumps(k["limits"]) if k["limits"] else NONE,
            json.dumps(k["budget"]) if k["budget"] else NONE, _when(k["expires_at"]),
        )  # fmt: skip
    out.print(table)


def _secret(answer: dict[str, Any], what: str) -> None:
    console.print(
        f"{what} {answer['key']['name']}: its secret is below, shown this once — keep it now.",
        highlight=False,
    )
    print(answer["secret"])


@keys_app.command("create")
def create_key(
    name: str,
    team: Annotated[str | None, typer.Option(help="Its team (limits, budget).")] = None,
    user: Annotated[str | None, typer.Option(help="Who or what uses the key.")] = None,
    route: Annotated[list[str] | None, typer.Option(help="A route it may use (repeat).")] = None,
    role: Annotated[str, typer.Option(help="user, viewer (console, reads) or admin.")] = "user",
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrent: Concurrent = None,
    daily_usd: Daily = None,
    monthly_usd: Monthly = None,
    soft: Annotated[bool, typer.Option(help="The budget warns instead of refusing.")] = False,
    expires_in_days: Annotated[float | None, typer.Option(help="It stops working then.")] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """Issue a key; its secret is printed once."""
    body: dict[str, Any] = {
        "name": name, "team": team, "user": user, "routes": route or None, "role": role,
        "limits": _limits(rpm, tpm, concurrent), "budget": _budget(daily_usd, monthly_usd, soft),
    }  # fmt: skip
    if expires_in_days is not None:
        body["expires_in_s"] = expires_in_days * 86_400
    _secret(_call(gateway, admin_key, "POST", "/admin/keys", body), "created")


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option()] = None,
    state: Annotated[str | None, typer.Option(help="active, expired or revoked.")] = None,
    as_json: AsJson = False,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """Stored keys (every page)."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = httpx.QueryParams(
            {k: v for k, v in {"team": team, "state": state, "after": after}.items() if v}
        )
        page = _call(gateway, admin_key, "GET", f"/admin/keys?limit=500&{query}")
        found += page["keys"]
        after = page["next"]
        if after is None:
            break
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        _show_keys(found)


@keys_app.command("show")
def show_key(
    name: str, gateway: Gateway = DEFAULT_GATEWAY, admin_key: AdminKey = DEFAULT_ADMIN
) -> None:
    """One key, as JSON."""
    print(json.dumps(_call(gateway, admin_key, "GET", f"/admin/keys/{name}"), indent=2))


@keys_app.command("update")
def update_key(
    name: str,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrent: Concurrent = None,
    daily_usd: Daily = None,
    monthly_usd: Monthly = None,
    soft: Annotated[bool, typer.Option(help="The budget warns instead of refusing.")] = False,
    route: Annotated[list[str] | None, typer.Option(help="Its routes, replaced (repeat).")] = None,
    expires_in_days: Annotated[float | None, typer.Option()] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """Change a key's limits, budget, routes or expiry (what is given replaces what was)."""
    body: dict[str, Any] = {}
    if limits := _limits(rpm, tpm, concurrent):
        body["limits"] = limits
    if budget := _budget(daily_usd, monthly_usd, soft):
        body["budget"] = budget
    if route:
        body["routes"] = route
    if expires_in_days is not None:
        body["expires_at"] = time.time() + expires_in_days * 86_400
    if not body:
        console.print("[red]error[/red] nothing to change: give a limit, budget, route or expiry")
        raise typer.Exit(2)
    _show_keys([_call(gateway, admin_key, "PATCH", f"/admin/keys/{name}", body)])


@keys_app.command("rotate")
def rotate_key(
    name: str,
    grace: Annotated[float, typer.Option(help="Seconds the old secret keeps working.")] = 3600,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """A new secret (printed once); the old one works for --grace seconds more."""
    answer = _call(gateway, admin_key, "POST", f"/admin/keys/{name}/rotate", {"grace_s": grace})
    _secret(answer, "rotated")


@keys_app.command("revoke")
def revoke_key(
    name: str, gateway: Gateway = DEFAULT_GATEWAY, admin_key: AdminKey = DEFAULT_ADMIN
) -> None:
    """Refuse the key from now on, on every replica."""
    key = _call(gateway, admin_key, "POST", f"/admin/keys/{name}/revoke")["key"]
    console.print(f"revoked {key['name']}", highlight=False)


@keys_app.command("spend")
def key_spend(
    name: str,
    since: Annotated[str, typer.Option(help="e.g. 24h, 7d, 30d or a date.")] = "30d",
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """What the key has spent, from the ledger."""
    said = _call(gateway, admin_key, "GET", f"/admin/keys/{name}/spend?since={since}")
    out.print(f"{name}: ${said['spend_usd']:.6f} over {said['requests']} requests since {since}")


@keys_app.command("audit")
def audit(
    subject: Annotated[str | None, typer.Option(help="One key's or team's entries.")] = None,
    limit: int = 50,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """Changes to keys and teams, newest first."""
    query = f"?limit={limit}" + (f"&subject={subject}" if subject else "")
    table = Table()
    for column in ("when", "who", "what", "subject"):
        table.add_column(column)
    for e in _call(gateway, admin_key, "GET", f"/admin/audit{query}")["entries"]:
        table.add_row(_when(e["ts"]), e["actor"], f"{e['kind']} {e['action']}", e["subject"])
    out.print(table)


@teams_app.command("create")
def create_team(
    name: str,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrent: Concurrent = None,
    daily_usd: Daily = None,
    monthly_usd: Monthly = None,
    soft: Annotated[bool, typer.Option(help="The budget warns instead of refusing.")] = False,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """A team: its limits and budget are shared by its keys."""
    body = {
        "name": name,
        "limits": _limits(rpm, tpm, concurrent),
        "budget": _budget(daily_usd, monthly_usd, soft),
    }
    team = _call(gateway, admin_key, "POST", "/admin/teams", body)
    console.print(f"created team {team['name']}", highlight=False)


@teams_app.command("update")
def update_team(
    name: str,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrent: Concurrent = None,
    daily_usd: Daily = None,
    monthly_usd: Monthly = None,
    soft: Annotated[bool, typer.Option(help="The budget warns instead of refusing.")] = False,
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """Change a team's limits or budget (what is given replaces what was)."""
    body: dict[str, Any] = {}
    if limits := _limits(rpm, tpm, concurrent):
        body["limits"] = limits
    if budget := _budget(daily_usd, monthly_usd, soft):
        body["budget"] = budget
    print(json.dumps(_call(gateway, admin_key, "PATCH", f"/admin/teams/{name}", body), indent=2))


@teams_app.command("list")
def list_teams(gateway: Gateway = DEFAULT_GATEWAY, admin_key: AdminKey = DEFAULT_ADMIN) -> None:
    """Stored teams."""
    table = Table()
    for column in ("name", "limits", "budget"):
        table.add_column(column)
    after: str | None = None
    while True:
        query = f"?limit=500&after={after}" if after else "?limit=500"
        page = _call(gateway, admin_key, "GET", f"/admin/teams{query}")
        for t in page["teams"]:
            table.add_row(
                t["name"],
                json.dumps(t["limits"]) if t["limits"] else NONE,
                json.dumps(t["budget"]) if t["budget"] else NONE,
            )
        after = page["next"]
        if after is None:
            break
    out.print(table)


@teams_app.command("show")
def show_team(
    name: str, gateway: Gateway = DEFAULT_GATEWAY, admin_key: AdminKey = DEFAULT_ADMIN
) -> None:
    """One team, as JSON."""
    print(json.dumps(_call(gateway, admin_key, "GET", f"/admin/teams/{name}"), indent=2))


@teams_app.command("spend")
def team_spend(
    name: str,
    since: Annotated[str, typer.Option(help="e.g. 24h, 7d, 30d or a date.")] = "30d",
    gateway: Gateway = DEFAULT_GATEWAY,
    admin_key: AdminKey = DEFAULT_ADMIN,
) -> None:
    """What the team's keys have spent, from the ledger."""
    said = _call(gateway, admin_key, "GET", f"/admin/teams/{name}/spend?since={since}")
    out.print(f"{name}: ${said['spend_usd']:.6f} over {said['requests']} requests since {since}")
