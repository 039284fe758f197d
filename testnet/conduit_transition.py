"""Transition mode on a real Conduit (run by hand, not by CI): every room paged back to its start
through `/messages`, as each migrated user, on Synapse and on a patched Conduit that was written
with `conduit write --recent N` and pages its older history from `transition-matrix proxy`.

    python3 testnet/conduit_transition.py --conduit http://127.0.0.1:6167 \
        --scenario "$TM_TESTNET_SCENARIO"

For each user who can log in and each room they are joined to: the event ids in the same
order, each event's content equal, and a redacted event marked `unsigned.redacted_because` by
the same redaction on both sides (a client shows "message deleted" from it). Uses the users'
own migrated access tokens; prints no secrets. Exit 1 if any check failed.
"""
import argparse
import json
import urllib.parse
import urllib.request

from checks import Checks

MAX_PAGES = 500  # bounded: a room of the testnet has at most ~5,100 events


def get(base, token, path, params=None):
    url = f"{base}/_matrix/client/v3{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def history(base, token, room):
    """Every timeline event of the room, newest first, as `/messages?dir=b` pages it."""
    q = urllib.parse.quote(room, safe="")
    frm, out = None, []
    for _ in range(MAX_PAGES):
        params = {"dir": "b", "limit": 100}
        if frm:
            params["from"] = frm
        page = get(base, token, f"/rooms/{q}/messages", params)
        out.extend(page.get("chunk", []))
        if not page.get("chunk") or not page.get("end"):
            return out
        frm = page["end"]
    raise RuntimeError(f"{room}: more than {MAX_PAGES} pages")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conduit", required=True)
    ap.add_argument("--scenario", required=True)
    a = ap.parse_args()
    s = json.load(open(a.scenario))
    check, redacted = Checks(), 0
    erased = {u["user_id"] for u in s["users"].values() if u["erased"]}

    for name, user in s["users"].items():
        if user["deactivated"]:
            continue
        token = next(iter(user["devices"].values()))
        for room in get(s["client_url"], token, "/joined_rooms")["joined_rooms"]:
            syn = history(s["client_url"], token, room)
            con = history(a.conduit, token, room)
            what = f"{room} as {name}"
            check([e["event_id"] for e in syn] == [e["event_id"] for e in con],
                  f"{what}: {len(syn)} events on Synapse, {len(con)} on Conduit, or another order")
            by_id = {e["event_id"]: e for e in con}
            for e in syn:
                c = by_id.get(e["event_id"])
                if c is None:
                    continue
                if e["sender"] in erased:
                    # Pruned for everyone on Conduit (docs/CONDUIT.md, "Erased users").
                    check(c.get("content") in ({}, e.get("content")),
                          f"{what}: {e['event_id']} of an erased user not pruned")
                else:
                    check(e.get("content") == c.get("content"), f"{what}: content of {e['event_id']}")
                rb = (e.get("unsigned") or {}).get("redacted_because")
                cb = (c.get("unsigned") or {}).get("redacted_because")
                check((rb or {}).get("event_id") == (cb or {}).get("event_id"),
                      f"{what}: {e['event_id']} redacted_because {rb and rb.get('event_id')} "
                      f"on Synapse, {cb and cb.get('event_id')} on Conduit")
                redacted += bool(rb)
    check.finish(f"{redacted} redacted events seen as redacted")


if __name__ == "__main__":
    main()
