"""`vaporform admin ...`: user administration straight against PostgreSQL, for the first admin
(there is nobody yet to call the admin routes) and for when the API is down.

Every command is audited like the admin routes, with no actor and `details.via = "cli"`.
Disabling tells the API nodes over Redis at once, when REDIS_URL is set; without it their
periodic re-check (`VAPORFORM_ACCESS_RECHECK_S`, 1 s) ends the user's sessions.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from typing import TextIO

from store import audit, db, users
from store.users import User
from vaporform.config import Config

MIN_PASSWORD = 8
MAX_PASSWORD = 256


class AdminError(RuntimeError):
    """A command that cannot be done as asked (exit status 1)."""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="users: create (the first admin), disable, enable, role")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    create = commands.add_parser("create-user", help="a new account; --admin for an admin")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (otherwise it is asked for)",
    )
    create.add_argument("--admin", action="store_true", help="give the account the admin role")
    for name, text in (
        ("disable", "end every session of the account and refuse its logins"),
        ("enable", "allow the account to log in again"),
    ):
        commands.add_parser(name, help=text).add_argument("--email", required=True)
    role = commands.add_parser("set-role", help="the global role: user or admin")
    role.add_argument("--email", required=True)
    role.add_argument("--role", required=True, choices=("user", "admin"))


def read_password(from_stdin: bool, stdin: TextIO) -> str:
    password = stdin.readline().rstrip("\r\n") if from_stdin else getpass.getpass("password: ")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AdminError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def _cli_entry(action: str, user: User, **details: object) -> audit.Entry:
    return audit.Entry(
        action=action,
        target=str(user.id),
        details={"via": "cli", "email": user.email, **details},
    )


async def create_user(config: Config, args: argparse.Namespace, stdin: TextIO) -> User:
    # Here rather than at the top: `vaporform` builds this parser for every command.
    from web.blueprints.auth import EMAIL_PATTERN
    from web.passwords import Passwords

    email, name = args.email.strip(), args.name.strip()
    if not re.match(EMAIL_PATTERN, email) or len(email) > 254:
        raise AdminError(f"{email!r} is not an email address")
    if not 1 <= len(name) <= 100:
        raise AdminError("the name must be 1 to 100 characters")
    password = read_password(args.password_stdin, stdin)
    passwords = Passwords(
        time_cost=config.argon2_time_cost,
        memory_kib=config.argon2_memory_kib,
        parallelism=config.argon2_parallelism,
    )
    password_hash = await passwords.hash(password)
    role = "admin" if args.admin else "user"
    conn = await db.connect(config.database_url)
    try:
        async with conn.transaction():
            user = await users.create(
                conn, email=email, name=name, password_hash=password_hash, role=role
            )
            if user is None:
                raise AdminError(f"an account with the email {email!r} exists already")
            await audit.append(conn, _cli_entry("admin.user_created", user, role=role))
    finally:
        await conn.close()
    return user


async def _announce(config: Config, user: User) -> None:
    """Tell every API node the account changed (a no-op without Redis: they re-check)."""
    if not config.redis_url:
        return
    from collab import channels
    from collab.broker import open_broker

    broker = open_broker(config.redis_url, config.redis_prefix)
    try:
        event = {"user_id": str(user.id), "node": "cli"}
        await broker.publish(channels.ACCESS, json.dumps(event).encode())
    finally:
        await broker.close()


async def change_user(config: Config, args: argparse.Namespace) -> User:
    conn = await db.connect(config.database_url)
    try:
        async with conn.transaction():
            await users.lock_admins(conn)
            user = await users.by_email(conn, args.email)
            if user is None:
                raise AdminError(f"no account has the email {args.email!r}")
            losing_admin = user.role == "admin" and not user.disabled
            demoted = args.admin_command == "disable" or (
                args.admin_command == "set-role" and args.role == "user"
            )
            if losing_admin and demoted and await users.other_active_admins(conn, user.id) == 0:
                raise AdminError("this is the only enabled admin; make another one first")
            if args.admin_command == "set-role":
                changed = await users.set_role(conn, user.id, args.role)
                entry = _cli_entry("admin.role_set", user, **{"from": user.role, "to": args.role})
            else:
                disabling = args.admin_command == "disable"
                changed = await users.set_disabled(conn, user.id, disabling)
                action = "admin.user_disabled" if disabling else "admin.user_enabled"
                entry = _cli_entry(action, user)
            assert changed is not None
            await audit.append(conn, entry)
    finally:
        await conn.close()
    await _announce(config, changed)
    return changed


async def run(config: Config, args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    """Run one `vaporform admin` command; prints the account as JSON."""
    try:
        if args.admin_command == "create-user":
            user = await create_user(config, args, stdin)
        else:
            user = await change_user(config, args)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**user.public(), "disabled": user.disabled}))
    return 0
