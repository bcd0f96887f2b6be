"""`init-demo`: one demo org per plan, with an owner, admin, editor and viewer key each.

Demo keys are HMAC(demo seed, org, role); the seed is random per database and stored in `settings`,
so running init-demo again prints the same keys without storing them. Anyone who can read the
database can derive the demo keys: they are for demos. Real keys (`keys create`) are random.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .auth import demo_key, hash_key, new_demo_seed
from .db import api_keys, members, orgs, settings
from .ledger import Ledger

SEED_KEY = "demo_seed"
DEMO_ORGS = (
    ("starter", "Northlight Animation (demo, Starter)", "Visa", "4242"),
    ("pro", "Harbour Lane Studio (demo, Pro)", "Visa", "4242"),
    ("enterprise", "Meridian Pictures (demo, Enterprise)", "Mastercard", "4444"),
)
DEMO_MEMBERS = (
    ("owner", "Ana (owner)"),
    ("admin", "Ben (admin)"),
    ("editor", "Cleo (editor)"),
    ("viewer", "Dev (viewer)"),
)
DEMO_BILLING_DAY = 1


def init_demo(ledger: Ledger) -> dict[str, Any]:
    """Create what is missing and return the demo orgs and keys; a second run changes nothing."""
    out = []
    with ledger._write() as conn:  # one transaction: two init-demo runs at once take turns
        seed = conn.execute(select(settings.c.value).where(settings.c.key == SEED_KEY)).scalar()
        if seed is None:
            seed = new_demo_seed()
            conn.execute(settings.insert().values(key=SEED_KEY, value=seed))
        for plan_id, name, brand, last4 in DEMO_ORGS:
            org_id = conn.execute(select(orgs.c.id).where(orgs.c.name == name)).scalar()
            if org_id is None:
                org_id = ledger.create_org_in(conn, name, plan_id, DEMO_BILLING_DAY, brand, last4)
            keys = {}
            for role, member_name in DEMO_MEMBERS:
                key = demo_key(seed, name, role)
                keys[role] = key
                known = conn.execute(select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key))).scalar()
                if known is None:
                    member_id = conn.execute(
                        select(members.c.id).where(members.c.org_id == org_id, members.c.name == member_name)
                    ).scalar()
                    if member_id is None:
                        member_id = ledger.add_member_in(conn, org_id, member_name, role)
                    ledger.add_key_in(conn, member_id, key, "demo")
            out.append({"id": org_id, "name": name, "plan": plan_id, "keys": keys})
    return {"orgs": out}
