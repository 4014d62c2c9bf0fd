"""The private PostgreSQL's roles: a superuser for set-up only, and the application's own role.

``librarian_admin`` is the cluster's bootstrap superuser. Only ``librarian run`` logs in as it,
to make roles and databases; no process it starts gets its password. ``librarian`` is the role
of every database URL the stack hands out: it can log in and owns the databases it uses (and
everything in them, so migrations and Dagster's schema upgrades work), and nothing more: no
superuser, so no ``COPY … TO PROGRAM``, no untrusted languages, no server files.

Clusters made before passwords (``initdb --auth=trust``) had ``librarian`` as their bootstrap
superuser, which PostgreSQL never lets lose SUPERUSER. :func:`adopt` renames that role to
``librarian_admin`` and makes ``librarian`` anew as the plain owner of what it owned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from psycopg2 import OperationalError, sql
from psycopg2.extensions import encrypt_password

from librarian.errors import LocalServerError

ADMIN = "librarian_admin"
APP = "librarian"
# Trust-era clusters' bootstrap superuser; and a short-lived superuser that renames it (a role
# cannot rename itself).
LEGACY_BOOTSTRAP = "librarian"
RENAMER = "librarian_setup"
BOOTSTRAP_OID = 10
SYSTEM_DATABASES = ("postgres", "template0", "template1")

# (user, database) → an autocommit connection.
Connect = Callable[[str, str], Any]

_APP_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
# Objects the bootstrap superuser owns outside the system schemas, except extension members and
# sequences that belong to a column (they move with their table).
_NOT_SYSTEM = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
_RELATIONS = f"""
SELECT c.oid::regclass::text, c.relkind FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relowner = {BOOTSTRAP_OID} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND {_NOT_SYSTEM}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND (d.deptype = 'e'
                      OR (c.relkind = 'S' AND d.deptype IN ('a', 'i')
                          AND d.refclassid = 'pg_class'::regclass)))
ORDER BY c.relkind = 'S'
"""
_FUNCTIONS = f"""
SELECT p.oid::regprocedure::text, p.prokind FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proowner = {BOOTSTRAP_OID} AND {_NOT_SYSTEM}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
"""
_TYPES = f"""
SELECT t.oid::regtype::text, t.typtype FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typowner = {BOOTSTRAP_OID} AND t.typtype IN ('e', 'd', 'r', 'c') AND {_NOT_SYSTEM}
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
"""
_SCHEMAS = f"""
SELECT quote_ident(n.nspname) FROM pg_namespace n
WHERE n.nspowner = {BOOTSTRAP_OID} AND {_NOT_SYSTEM}
"""
_RELATION_KINDS = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE", "S": "SEQUENCE"}
_FUNCTION_KINDS = {"p": "PROCEDURE", "a": "AGGREGATE"}


def set_password(conn: Any, role: str, password: str) -> None:
    # The SCRAM verifier is computed here: the password itself never reaches the server, so no
    # statement in its log (a failed one is logged in full) can show it.
    verifier = encrypt_password(password, role, conn, "scram-sha-256")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role),
                                                                 sql.Literal(verifier)))


def ensure_app_role(conn: Any, password: str) -> None:
    """The application role exists, with only LOGIN, and its password is ``password``."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(f"{verb} ROLE {{}} WITH {_APP_ATTRIBUTES}").format(
            sql.Identifier(APP)))
    set_password(conn, APP, password)


def create_database(connect: Connect, name: str) -> None:
    """Database ``name``, owned by the application role (made if missing)."""
    with contextlib.closing(connect(ADMIN, "postgres")) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(APP)))
            return
    hand_over(connect, name)


def hand_over(connect: Connect, name: str) -> None:
    """Make the application role the owner of database ``name`` and of what the bootstrap
    superuser owns in it (everything, in a database made before passwords)."""
    with contextlib.closing(connect(ADMIN, name)) as conn, conn.cursor() as cur:
        app = sql.Identifier(APP)
        cur.execute(_SCHEMAS)
        for (schema,) in cur.fetchall():
            cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.SQL(schema), app))
        cur.execute(_RELATIONS)
        for relation, kind in cur.fetchall():
            cur.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(_RELATION_KINDS.get(kind, "TABLE")), sql.SQL(relation), app))
        cur.execute(_FUNCTIONS)
        for function, kind in cur.fetchall():
            cur.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(_FUNCTION_KINDS.get(kind, "FUNCTION")), sql.SQL(function), app))
        cur.execute(_TYPES)
        for type_name, kind in cur.fetchall():
            cur.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL("DOMAIN" if kind == "d" else "TYPE"), sql.SQL(type_name), app))
        cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), app))


def adopt(connect: Connect, admin_password: str, app_password: str) -> None:
    """Make any cluster of ours what start-up expects: ``librarian_admin`` its bootstrap
    superuser, ``librarian`` a plain role owning every database, both with the passwords
    given. ``connect`` must need no password (the maintenance start: trust on a socket only
    the server's user can open). Safe to run again after it was interrupted at any point."""
    bootstrap = _bootstrap_name(connect)
    if bootstrap != ADMIN:
        _rename(connect, bootstrap)
    with contextlib.closing(connect(ADMIN, "postgres")) as conn:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(RENAMER)))
            cur.execute("SELECT datname FROM pg_database WHERE NOT datname = ANY(%s)",
                        (list(SYSTEM_DATABASES),))
            databases = [name for (name,) in cur.fetchall()]
        set_password(conn, ADMIN, admin_password)
        ensure_app_role(conn, app_password)
    for name in databases:
        hand_over(connect, name)


def _bootstrap_name(connect: Connect) -> str:
    for user in (ADMIN, LEGACY_BOOTSTRAP):
        try:
            conn = connect(user, "postgres")
        except OperationalError:
            continue  # no such role: the other one
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("SELECT rolname FROM pg_roles WHERE oid = %s", (BOOTSTRAP_OID,))
            row = cur.fetchone()
        return str(row[0])
    raise LocalServerError(f"neither {ADMIN} nor {LEGACY_BOOTSTRAP} can log in to this "
                           "PostgreSQL data folder: it was not made by Librarian")


def _rename(connect: Connect, bootstrap: str) -> None:
    with contextlib.closing(connect(bootstrap, "postgres")) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ADMIN,))
        if cur.fetchone() is not None:
            raise LocalServerError(f"role {ADMIN} exists but is not the bootstrap superuser")
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (RENAMER,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(
                sql.Identifier(RENAMER)))
    with contextlib.closing(connect(RENAMER, "postgres")) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(
            sql.Identifier(bootstrap), sql.Identifier(ADMIN)))
