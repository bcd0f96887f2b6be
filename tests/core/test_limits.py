"""What the Cost Estimate says a budget and a cap do with a batch, before anything is sent (no bpy).

The service checks the same rules when it holds (tests/server/test_budgets.py); these are the
words and numbers the artist reads beforehand. Hand numbers: a refuse budget of 5,000 with 1,000
spent and 500 held leaves 3,500.
"""

from __future__ import annotations

from act3_credits.core import limits

BUDGET = dict(project="spot-2027", credits=5_000, period="billing_period", spent=1_000, held=500, left=3_500)


def budget(action: str) -> limits.Budget:
    return limits.Budget(action=action, **BUDGET)


def test_the_project_is_the_field_else_the_blend_name_else_untitled():
    assert limits.project_name("  spot  2027 ", "/shows/harbour.blend") == "spot 2027"
    assert limits.project_name("", "/shows/harbour_spot.BLEND") == "harbour_spot"
    assert limits.project_name("", "") == "untitled"
    assert len(limits.project_name("", "/x/" + "a" * 300 + ".blend")) == 64


def test_within_the_budget_says_nothing():
    lim = limits.assess("spot-2027", budget("refuse"), None, [1_000, 2_500])  # 3,500: exactly what is left
    assert (lim.verdict, lim.message, lim.refused) == ("within", None, False)


def test_a_refuse_budget_refuses_in_words():
    lim = limits.assess("spot-2027", budget("refuse"), None, [2_080, 2_080])
    assert lim.refused and lim.needed == 4_160
    assert lim.message == "Over the spot-2027 budget: this needs 4,160 cr, 3,500 cr of its 5,000 cr are left."


def test_a_warn_budget_says_by_how_much_and_a_pause_budget_where_it_stops():
    warn = limits.assess("spot-2027", budget("warn"), None, [2_080, 2_080])
    assert (warn.verdict, warn.message) == ("warn", "660 cr over the spot-2027 budget: it is sent anyway (warn).")
    # 1,000 + 2,000 = 3,000 fits in 3,500; the third shot takes it to 4,500.
    pause = limits.assess("spot-2027", budget("pause"), None, [1_000, 2_000, 1_500])
    assert (pause.verdict, pause.pause_before) == ("pause", 2)
    assert pause.message == "The job will pause before shot 3, where it crosses the spot-2027 budget."


def test_the_members_cap_comes_first_and_refuses():
    cap = limits.MemberCap(4_000, spent=2_000, held=1_000, left=1_000)
    lim = limits.assess("spot-2027", None, cap, [1_040, 1_040])
    assert lim.refused
    assert lim.message == "Over your cap: this needs 2,080 cr, 1,000 cr of your 4,000 cr are left this period."
    assert cap.summary() == "1,000 of 4,000 cr left this period"
    me = {"member": {"cap": {"credits_per_period": 4_000, "spent": 2_000, "held": 1_000, "left": 1_000}}}
    assert limits.MemberCap.from_me(me) == cap
    assert limits.MemberCap.from_me({"member": {"cap": None}}) is None


def test_defer_is_dated_from_the_billing_date():
    assert limits.defer_label("2026-12-01") == "Defer to 1 Dec"
    assert limits.starts_text("2027-01-01") == "starts 1 Jan"
    assert limits.defer_label("") == "Defer to next period"
