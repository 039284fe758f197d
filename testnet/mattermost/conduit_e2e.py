"""End-to-end check of a Mattermost import served by a real Conduit (run by hand, not by CI).

    python3 testnet/mattermost/conduit_e2e.py --conduit http://127.0.0.1:16167 \
        --archive ./mm-archive --pg-url "$TM_MM_PG_URL" --fixture "$TM_MM_FIXTURE"

Conduit must be built with patches/conduit-bcrypt-login.patch (the fixture's users log in with
their Mattermost passwords, "<username>-password") and started on the database that
`mattermost import --conduit-db` wrote. The truth is Mattermost's own database (read with psql)
and the fixture's description; the archive gives only the id mappings (post id → event id).
Every check prints `ok` or `FAIL`; the exit status is 1 if any failed. Prints no secrets.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections import defaultdict

import requests

# Users of the fixture with a bcrypt password (testnet/mattermost/generate.py PASSWORD_HASHES).
WITH_PASSWORD = ["sysadmin", "alice", "bob", "carol", "dave", "erin.e", "frank", "grace_g", "zoe"]
MEMBERSHIP_TYPES = ("system_join_channel", "system_leave_channel", "system_add_to_channel",
                    "system_remove_from_channel", "system_join_team", "system_leave_team",
                    "system_add_to_team", "system_remove_from_team")


def q(s):
    return urllib.parse.quote(s, safe="")


class Check:
    def __init__(self):
        self.passed = self.total = 0

    def __call__(self, name, cond, detail=""):
        self.total += 1
        self.passed += bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {name}" + (f" — {detail}" if detail != "" else ""))
        return bool(cond)


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-d", url, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [row.split("\x1f") for row in out.rstrip("\n").split("\x1e") if row]


class Client:
    def __init__(self, base, token=None):
        self.base, self.token = base, token

    def req(self, method, path, **kw):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.request(method, self.base + path, headers=h, timeout=30, **kw)

    def get(self, path, **kw):
        r = self.req("GET", path, **kw)
        r.raise_for_status()
        return r.json()

    def timeline(self, room):
        """Every event of the room, oldest first, through /messages backwards (bounded)."""
        events, frm = [], None
        for _ in range(10_000):
            params = {"dir": "b", "limit": 100, **({"from": frm} if frm else {})}
            page = self.get(f"/_matrix/client/v3/rooms/{q(room)}/messages", params=params)
            events += page.get("chunk", [])
            if not page.get("end") or not page.get("chunk"):
                break
            frm = page["end"]
        return list(reversed(events))


def login(base, user, password):
    return requests.post(base + "/_matrix/client/v3/login", timeout=30, json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conduit", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--fixture", required=True)
    a = ap.parse_args()
    check = Check()
    mapdir = os.path.join(a.archive, "mapping")
    load = lambda name: json.load(open(os.path.join(mapdir, name)))  # noqa: E731
    users, rooms, members = load("users.json"), load("rooms.json"), load("memberships.json")
    fixture = json.load(open(a.fixture))
    server = json.load(open(os.path.join(a.archive, "manifest.json")))["server_name"]
    report = json.load(open(os.path.join(a.archive, "import-report.json")))
    skipped = {s["id"] for s in report["skipped"]}
    post_event = {}
    for cid in rooms:
        post_event.update(load(f"{cid}.json"))

    r = requests.get(a.conduit + "/_matrix/client/versions", timeout=30)
    check("Conduit answers /versions", r.status_code == 200, r.status_code)
    key_id = open(os.path.join(a.archive, "keys", "signing.key")).read().split()[:2]
    keys = requests.get(a.conduit + "/_matrix/key/v2/server", timeout=30).json()
    check("Conduit publishes the archive's signing key", f"{key_id[0]}:{key_id[1]}" in keys.get("verify_keys", {}),
          list(keys.get("verify_keys", {})))

    # Logins with the Mattermost passwords.
    by_name = {u["username"]: u for u in fixture["users"]}
    tokens = {}
    for name in WITH_PASSWORD:
        r = login(a.conduit, name, f"{name}-password")
        if by_name[name]["deactivated"]:
            check(f"deactivated {name} cannot log in", r.status_code == 403, r.status_code)
        elif check(f"{name} logs in with the Mattermost password", r.status_code == 200, r.status_code):
            tokens[name] = r.json()["access_token"]
    r = login(a.conduit, "alice", "wrong-password")
    check("a wrong password is refused", r.status_code == 403, r.status_code)

    # Source truth from Mattermost's database.
    posts = psql(a.pg_url, "SELECT id, channelid, userid, createat, rootid, type, ispinned, message "
                 "FROM posts WHERE deleteat = 0 AND originalid = '' ORDER BY createat, id")
    by_channel = defaultdict(list)
    for p in posts:
        by_channel[p[1]].append(p)
    reactions = psql(a.pg_url, "SELECT postid, userid, emojiname FROM reactions WHERE deleteat = 0")
    files = psql(a.pg_url, "SELECT f.id, f.postid, f.name, f.path, f.mimetype, f.size FROM fileinfo f "
                 "JOIN posts p ON p.id = f.postid WHERE f.deleteat = 0 AND p.deleteat = 0")

    lost = [p[0] for p in posts if p[0] not in post_event and p[0] not in skipped and p[5] not in MEMBERSHIP_TYPES]
    check("every live post is an event or a reported skip", not lost, lost[:5])

    # Joined rooms, spaces and DMs as each user sees them.
    admin_room = None
    for name, tok in tokens.items():
        c = Client(a.conduit, tok)
        uid = f"@{name}:{server}"
        joined = set(c.get("/_matrix/client/v3/joined_rooms")["joined_rooms"])
        want = {rid for rid, m in members.items() if uid in m["now"]}
        extra = joined - want
        if by_name[name]["system_admin"] and len(extra) == 1:
            admin_room = next(iter(extra))
            extra = set()
        check(f"{name} is in exactly their rooms and spaces" + (" (and the admin room)" if admin_room and
              by_name[name]["system_admin"] else ""), not extra and want <= joined,
              f"{len(joined)} joined, {len(want)} expected")
        direct = c.req("GET", f"/_matrix/client/v3/user/{q(uid)}/account_data/m.direct")
        dm_rooms = {rid for ids in (direct.json().values() if direct.ok else []) for rid in ids}
        want_dm = {rooms[d["id"]] for d in fixture["direct"] if name in d["members"]}
        check(f"{name}'s m.direct lists their DMs and group messages", want_dm <= dm_rooms,
              f"{len(want_dm)} expected, {len(dm_rooms)} listed")

    alice = Client(a.conduit, tokens["alice"])
    sysadmin = Client(a.conduit, tokens["sysadmin"])
    prof = alice.get(f"/_matrix/client/v3/profile/{q('@alice:' + server)}")
    check("alice's display name", prof.get("displayname") == by_name["alice"]["display_name"], prof.get("displayname"))
    avatar = open(os.path.join(fixture["files_dir"], by_name["alice"]["profile_picture"]), "rb").read()
    got = alice.req("GET", "/_matrix/client/v1/media/download/" + prof.get("avatar_url", "mxc://x/y")[6:])
    check("alice's avatar downloads as the Mattermost picture", got.ok and got.content == avatar, got.status_code)

    for team in fixture["teams"]:
        space = rooms[team["id"]]
        h = sysadmin.req("GET", f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
        children = {r["room_id"] for r in h.json().get("rooms", [])} if h.ok else set()
        public = {rooms[ch["id"]] for ch in fixture["channels"]
                  if ch["team_id"] == team["id"] and ch["type"] == "O"}
        check(f"space {team['name']}: /hierarchy lists its public channels", public <= children,
              f"{len(public & children)}/{len(public)}")

    # Every channel's history: events, order, senders, times, threads, reactions, files, pins.
    member_of = {}
    for ch in fixture["channels"] + fixture["direct"]:
        member_of[ch["id"]] = next((Client(a.conduit, tokens[n]) for n in ch["members"] if n in tokens), None)
    unread = [cid for cid, c in member_of.items() if c is None]
    check(f"all {len(member_of)} channels have a member who can log in to read them", not unread, unread)
    timelines = {}
    for cid, c in member_of.items():
        if c is None:
            continue
        rid = rooms[cid]
        tl = c.timeline(rid)
        timelines[cid] = tl
        pos = {e["event_id"]: i for i, e in enumerate(tl)}
        mapped = [p for p in by_channel[cid] if p[0] in post_event]
        missing = [p[0] for p in mapped if post_event[p[0]] not in pos]
        order = [pos.get(post_event[p[0]], -1) for p in mapped]
        ev = {e["event_id"]: e for e in tl}
        wrong = [p[0] for p in mapped if post_event[p[0]] in ev and (
            ev[post_event[p[0]]]["sender"] != users.get(p[2]) or ev[post_event[p[0]]]["origin_server_ts"] != int(p[3]))]
        ts = [e["origin_server_ts"] for e in tl]
        ok = (not missing and order == sorted(order) and not wrong and ts == sorted(ts))
        check(f"room {cid}: {len(mapped)} posts in order with their senders and times ({len(tl)} events)", ok,
              f"missing {missing[:3]}, wrong {wrong[:3]}, ordered {order == sorted(order)}, ts {ts == sorted(ts)}")

    # Threads: every reply of a mapped root is in the root's thread, also through Conduit's index.
    bad, roots = [], defaultdict(set)
    for p in posts:
        if p[4] and p[0] in post_event and p[4] in post_event:
            roots[p[4]].add(post_event[p[0]])
    for root, replies in roots.items():
        cid = next(p[1] for p in posts if p[0] == root)
        c = member_of[cid]
        rel = c.get(f"/_matrix/client/v1/rooms/{q(rooms[cid])}/relations/{q(post_event[root])}/m.thread",
                    params={"limit": 100})
        if not replies <= {e["event_id"] for e in rel["chunk"]}:  # a reply's file events come too
            bad.append(root)
    check(f"{len(roots)} threads: /relations m.thread gives every reply", roots and not bad, bad[:3])

    # Reactions: one m.annotation per live Mattermost reaction of a mapped post by a mapped user.
    want = defaultdict(int)
    for postid, userid, _ in reactions:
        if postid in post_event and userid in users:
            want[post_event[postid]] += 1
    got = defaultdict(int)
    for tl in timelines.values():
        for e in tl:
            rel = e.get("content", {}).get("m.relates_to", {})
            if e["type"] == "m.reaction" and rel.get("rel_type") == "m.annotation":
                got[rel["event_id"]] += 1
    check(f"{sum(want.values())} reactions on their posts", want and dict(want) == dict(got),
          f"{sum(got.values())} found")

    # Edits: the first version at CreateAt, later ones as m.replace; Conduit serves the latest.
    for edit in fixture["edits"]:
        eid = post_event[edit["id"]]
        cid = next(p[1] for p in posts if p[0] == edit["id"])
        c, rid = member_of[cid], rooms[cid]
        orig = c.get(f"/_matrix/client/v3/rooms/{q(rid)}/event/{q(eid)}")
        rel = c.get(f"/_matrix/client/v1/rooms/{q(rid)}/relations/{q(eid)}/m.replace")["chunk"]
        rel.sort(key=lambda e: e["origin_server_ts"])
        bodies = [orig["content"]["body"]] + [e["content"]["m.new_content"]["body"] for e in rel]
        times = [orig["origin_server_ts"]] + [e["origin_server_ts"] for e in rel]
        check(f"post {edit['id']}: every version, each at its time",
              bodies == edit["versions"] and times == edit["times"], bodies)

    # Deleted posts: left out (`--deleted omit`) or served redacted (`--deleted redact`), never
    # with their text.
    deleted = psql(a.pg_url, "SELECT id, channelid FROM posts WHERE deleteat > 0 AND originalid = ''")
    shown = []
    for pid, cid in deleted:
        if pid in post_event and member_of.get(cid):
            e = member_of[cid].get(f"/_matrix/client/v3/rooms/{q(rooms[cid])}/event/{q(post_event[pid])}")
            if e.get("content") or not e.get("unsigned", {}).get("redacted_because"):
                shown.append(pid)
    redacted = sum(pid in post_event for pid, _ in deleted)
    check(f"{len(deleted)} deleted posts: {redacted} served redacted, the rest left out", deleted and not shown,
          shown[:3])

    # Files: an m.image/m.file event per live file, its bytes the file store's.
    file_events = {}
    for tl in timelines.values():
        for e in tl:
            if e["type"] == "m.room.message" and "url" in e["content"]:
                file_events[e["content"]["body"]] = e
    for fid, postid, name, path, mime, size in files:
        if postid not in post_event:
            check(f"file {name} of a left-out post is reported", postid in skipped)
            continue
        e = file_events.get(name)
        if not check(f"file {name} is an event", e is not None):
            continue
        blob = open(os.path.join(fixture["files_dir"], path), "rb").read()
        got = alice.req("GET", "/_matrix/client/v1/media/download/" + e["content"]["url"][6:])
        legacy = requests.get(a.conduit + "/_matrix/media/v3/download/" + e["content"]["url"][6:], timeout=30)
        info = e["content"].get("info", {})
        check(f"file {name}: same bytes on both media endpoints, size and type",
              got.ok and got.content == blob and legacy.content == blob and info.get("size") == int(size)
              and info.get("mimetype") == mime, f"{got.status_code} {info.get('mimetype')}")
        if mime.startswith("image/"):
            check(f"image {name}: msgtype m.image with dimensions", e["content"]["msgtype"] == "m.image"
                  and info.get("w") and info.get("h"), info)
            th = alice.req("GET", "/_matrix/client/v1/media/thumbnail/" + e["content"]["url"][6:],
                           params={"width": 64, "height": 64, "method": "scale"})
            check(f"image {name}: Conduit makes a thumbnail",
                  th.ok and th.headers.get("content-type", "").startswith("image/"), th.status_code)

    # Pins and the archived channel's read-only power levels.
    for ch in fixture["channels"]:
        c, rid = member_of[ch["id"]], rooms[ch["id"]]
        pinned = [post_event[p[0]] for p in by_channel[ch["id"]] if p[6] == "t" and p[0] in post_event]
        if pinned:
            st = c.get(f"/_matrix/client/v3/rooms/{q(rid)}/state/m.room.pinned_events/")
            check(f"room {ch['name']}: pins in post order", st.get("pinned") == pinned, st.get("pinned"))
        if ch["archived"]:
            pl = c.get(f"/_matrix/client/v3/rooms/{q(rid)}/state/m.room.power_levels/")
            check(f"archived {ch['name']} is read-only", pl.get("events_default") == 100, pl.get("events_default"))

    # Life after the import: a new message reaches another member; the admin room answers.
    town = next(ch for ch in fixture["channels"] if "alice" in ch["members"] and "bob" in ch["members"]
                and not ch["archived"])
    rid = rooms[town["id"]]
    sent = alice.req("PUT", f"/_matrix/client/v3/rooms/{q(rid)}/send/m.room.message/e2e-{time.time_ns()}",
                     json={"msgtype": "m.text", "body": "hello after the move"})
    last = Client(a.conduit, tokens["bob"]).get(f"/_matrix/client/v3/rooms/{q(rid)}/messages",
                                                params={"dir": "b", "limit": 1})["chunk"]
    check("a new message from alice reaches bob", sent.ok and last and last[0]["event_id"] == sent.json()["event_id"],
          sent.status_code)
    if check("sysadmin (system admin) is in Conduit's admin room", admin_room is not None):
        sysadmin.req("PUT", f"/_matrix/client/v3/rooms/{q(admin_room)}/send/m.room.message/e2e-{time.time_ns()}",
                     json={"msgtype": "m.text", "body": f"@conduit:{server}: list-local-users"})
        answer = ""
        for _ in range(20):
            chunk = sysadmin.get(f"/_matrix/client/v3/rooms/{q(admin_room)}/messages",
                                 params={"dir": "b", "limit": 1})["chunk"]
            if chunk and chunk[0]["sender"] == f"@conduit:{server}":
                answer = chunk[0]["content"].get("body", "")
                break
            time.sleep(0.5)
        check("the admin command list-local-users is answered with the migrated users", "alice" in answer,
              answer[:60])

    print(f"{check.passed}/{check.total} passed")
    return 0 if check.passed == check.total else 1


if __name__ == "__main__":
    sys.exit(main())
