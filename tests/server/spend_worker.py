"""Run as a separate process by test_concurrency.py: spend one org as fast as possible, then render.

    python spend_worker.py DATABASE_URL ORG_ID MEMBER_ID NAME NOW

NOW (ISO 8601) is the test's manual clock, which this process's ledger reads too: on the real clock
a billing date between the two would refill the org here and not in the test.

Creates small jobs until the org answers 402, then claims and completes shots until none is left,
and prints JSON {"jobs": [[id, estimate], ...], "charged": [[shot_id, credits], ...]}.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime

from act3_server import db
from act3_server.ledger import Actor, Ledger, LedgerError


def main() -> None:
    url, org_id, member_id, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    now = datetime.fromisoformat(sys.argv[5])
    engine = db.make_engine(url, pool_size=2)
    ledger = Ledger(engine, lambda: now)
    actor = Actor(org_id, member_id, "Cleo (editor)", "editor")
    rng = random.Random(name)
    jobs, charged = [], []
    while True:
        shots = [
            {"name": f"{name}-{i}", "engine": "veo-3.1", "tier": "standard", "duration_s": 8}
            for i in range(rng.randint(1, 3))
        ]
        try:
            body = ledger.create_job(actor, name, shots, f"{name}-{len(jobs)}").body
        except LedgerError as err:
            assert err.code == "insufficient_credits", err.code
            break
        jobs.append([body["id"], body["estimated_credits"]])
    while (claim := ledger.claim_next_shot(name)) is not None:
        if ledger.complete_shot(claim):
            charged.append([claim.shot_id, claim.credits])
    print(json.dumps({"jobs": jobs, "charged": charged}))
    engine.dispose()


if __name__ == "__main__":
    main()
