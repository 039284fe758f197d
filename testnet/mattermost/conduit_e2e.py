"""End-to-end check of a Mattermost import served by a real Conduit (run by hand, not by CI).

    python3 testnet/mattermost/conduit_e2e.py --conduit http://127.0.0.1:6167 \
        --archive ./mm-archive --pg-url "$TM_MM_PG_URL" --fixture "$TM_MM_FIXTURE"

Conduit must be built with patches/conduit-bcrypt-login.patch (the fixture's users log in with
their Mattermost passwords, "<username>-password") and started on the database that
`mattermost import --conduit-db` wrote. The truth is Mattermost's own database (read with psql)
and the fixture's description; the archive gives only the id mappings (post id → event id, users,
rooms), the signing key and its report of what was left out.
Every check prints `ok` or `FAIL`; the exit status is 1 if any failed. Prints no secrets.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections import defaultdict

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    """Rows of `sql`; the URL's password goes to psql through its environment, never argv."""
    u = urllib.parse.urlsplit(url)
    env = dict(os.environ, PGHOST=u.hostname or "127.0.0.1", PGPORT=str(u.port or 5432),
               PGUSER=urllib.parse.unquote(u.username or ""), PGPASSWORD=urllib.parse.unquote(u.password or ""),
               PGDATABASE=u.path.lstrip("/"), PGSSLMODE="disable")
    r = subprocess.run(["psql", "-X", "-w", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-c", sql],
                       capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        sys.exit(f"psql failed: {r.stderr.strip()}")
    return [row.split("\x1f") for row in r.stdout.rstrip("\n").split("\x1e") if row]


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


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
        for _ in range(10_000):  # 10^6 events at most
            params = {"dir": "b", "limit": 100, **({"from": frm} if frm else {})}
            page = self.get(f"/_matrix/client/v3/rooms/{q(room)}/messages", params=params)
            events += page.get("chunk", [])
            if not page.get("end") or not page.get("chunk"):
                break
            frm = page["end"]
        return list(reversed(events))

    def relations(self, room, event, rel):
        """Every event relating to `event` by `rel`, following `next_batch` (bounded). Conduit
        v0.10.12 gives a `next_batch` on the last page too, and the page it leads to repeats
        events: stop when a page brings nothing new."""
        out, frm = {}, None
        for _ in range(1_000):
            params = {"limit": 100, **({"from": frm} if frm else {})}
            page = self.get(f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(event)}/{rel}", params=params)
            new = {e["event_id"]: e for e in page["chunk"] if e["event_id"] not in out}
            out.update(new)
            frm = page.get("next_batch")
            if not frm or not new:
                break
        return list(out.values())


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
    ap.add_argument("--initial-passwords", help="the import's --initial-passwords file: the single "
                    "sign-on account logs in with the password it lists")
    a = ap.parse_args()
    check = Check()
    mapdir = os.path.join(a.archive, "mapping")
    load = lambda name: json.loads(read(os.path.join(mapdir, name)))  # noqa: E731
    users, rooms = load("users.json"), load("rooms.json")
    fixture = json.loads(read(a.fixture))
    server = json.loads(read(os.path.join(a.archive, "manifest.json")))["server_name"]
    report = json.loads(read(os.path.join(a.archive, "import-report.json")))
    skipped = {s["id"] for s in report["skipped"]}
    post_event = {}
    for cid in rooms:
        post_event.update(load(f"{cid}.json"))

    r = requests.get(a.conduit + "/_matrix/client/versions", timeout=30)
    check("Conduit answers /versions", r.status_code == 200, r.status_code)
    alg, version, seed = read(os.path.join(a.archive, "keys", "signing.key")).split()[:3]
    public = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed + "=" * (-len(seed) % 4))).public_key()
    want_key = base64.b64encode(public.public_bytes_raw()).decode().rstrip("=")
    keys = requests.get(a.conduit + "/_matrix/key/v2/server", timeout=30).json().get("verify_keys", {})
    check("Conduit publishes the archive's signing key", keys.get(f"{alg}:{version}", {}).get("key") == want_key,
          list(keys))

    # Logins with the Mattermost passwords.
    by_name = {u["username"]: u for u in fixture["users"]}
    tokens = {}
    for name in WITH_PASSWORD:
        r = login(a.conduit, name, f"{name}-password")
        if by_name[name]["deactivated"]:
            check(f"deactivated {name} cannot log in", r.status_code == 403, r.status_code)
        elif check(f"{name} logs in with the Mattermost password", r.status_code == 200, r.status_code):
            tokens[name] = r.json()["access_token"]
    if a.initial_passwords:
        listed = dict(l.split("\t", 1) for l in open(a.initial_passwords).read().splitlines()
                      if l and not l.startswith("#"))
        for uid, password in listed.items():
            name = uid[1:].split(":")[0]
            r = login(a.conduit, name, password)
            if check(f"{name} logs in with the initial password", r.status_code == 200, r.status_code):
                tokens.setdefault(name, r.json()["access_token"])
    r = login(a.conduit, "alice", "wrong-password")
    check("a wrong password is refused", r.status_code == 403, r.status_code)
    if not {"alice", "bob", "sysadmin"} <= tokens.keys():
        sys.exit("alice, bob and sysadmin must log in for the rest of the checks")

    # Source truth from Mattermost's database.
    posts = psql(a.pg_url, "SELECT id, channelid, userid, createat, rootid, type, ispinned, message "
                 "FROM posts WHERE deleteat = 0 AND originalid = '' ORDER BY createat, id")
    by_channel = defaultdict(list)
    for p in posts:
        by_channel[p[1]].append(p)
    post_channel = {p[0]: p[1] for p in posts}
    reactions = psql(a.pg_url, "SELECT postid, userid, emojiname FROM reactions WHERE deleteat = 0")
    files = psql(a.pg_url, "SELECT f.id, f.postid, f.name, f.path, f.mimetype, f.size, f.width, f.height "
                 "FROM fileinfo f JOIN posts p ON p.id = f.postid WHERE f.deleteat = 0 AND p.deleteat = 0")
    members = defaultdict(set)  # room id -> Matrix users who are members now, by Mattermost's tables
    for cid, uid in psql(a.pg_url, "SELECT channelid, userid FROM channelmembers UNION "
                         "SELECT teamid, userid FROM teammembers WHERE deleteat = 0"):
        if cid in rooms and uid in users:
            members[rooms[cid]].add(users[uid])

    lost = [p[0] for p in posts if p[0] not in post_event and p[0] not in skipped and p[5] not in MEMBERSHIP_TYPES]
    check("every live post (but join/leave notices, which are membership events) is an event or a reported skip",
          not lost, lost[:5])

    # Joined rooms, spaces and DMs as each user sees them.
    r = requests.get(f"{a.conduit}/_matrix/client/v3/directory/room/{q('#admins:' + server)}", timeout=30)
    admin_room = r.json().get("room_id") if r.ok else None
    check("the admin room #admins exists", admin_room is not None, r.status_code)
    for name, tok in tokens.items():
        c = Client(a.conduit, tok)
        uid = f"@{name}:{server}"
        joined = set(c.get("/_matrix/client/v3/joined_rooms")["joined_rooms"])
        want = {rid for rid, m in members.items() if uid in m}
        if by_name[name]["system_admin"]:
            want.add(admin_room)
        check(f"{name} is in exactly their channels and teams' spaces" +
              (" and the admin room" if by_name[name]["system_admin"] else ""), joined == want,
              f"{len(joined)} joined, {len(want)} expected")
        direct = c.req("GET", f"/_matrix/client/v3/user/{q(uid)}/account_data/m.direct")
        dm_rooms = {rid for ids in (direct.json().values() if direct.ok else []) for rid in ids}
        want_dm = {rooms[d["id"]] for d in fixture["direct"] if name in d["members"]}
        check(f"{name}'s m.direct lists exactly their DMs and group messages ({len(want_dm)})", want_dm == dm_rooms
              and (direct.ok or direct.status_code == 404 and not want_dm), f"{len(dm_rooms)} listed")

    alice = Client(a.conduit, tokens["alice"])
    sysadmin = Client(a.conduit, tokens["sysadmin"])
    prof = alice.get(f"/_matrix/client/v3/profile/{q('@alice:' + server)}")
    check("alice's display name", prof.get("displayname") == by_name["alice"]["display_name"], prof.get("displayname"))
    avatar = read(os.path.join(fixture["files_dir"], by_name["alice"]["profile_picture"]), "rb")
    got = alice.req("GET", "/_matrix/client/v1/media/download/" + prof.get("avatar_url", "mxc://x/y")[6:])
    check("alice's avatar downloads as the Mattermost picture", got.ok and got.content == avatar, got.status_code)

    for team in fixture["teams"]:
        space = rooms[team["id"]]
        # Private channels are children too, shown to their members only. A member asks first:
        # Conduit v0.10.12 caches a child a non-member could not see as missing for everyone
        # until it restarts (docs/MATTERMOST.md, "On a real Conduit").
        for name, tok in (("alice", tokens["alice"]), ("sysadmin", tokens["sysadmin"])):
            h = Client(a.conduit, tok).req("GET", f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
            seen = {r["room_id"] for r in h.json().get("rooms", [])} if h.ok else set()
            mine = {rooms[ch["id"]] for ch in fixture["channels"]
                    if ch["team_id"] == team["id"] and ch["type"] == "P" and name in ch["members"]}
            others = {rooms[ch["id"]] for ch in fixture["channels"]
                      if ch["team_id"] == team["id"] and ch["type"] == "P" and name not in ch["members"]}
            check(f"space {team['name']}: {name} sees their private channels ({len(mine)}) and no others",
                  h.ok and mine <= seen and not (others & seen), f"{len(mine & seen)}/{len(mine)}, "
                  f"{len(others & seen)} others")
        h = sysadmin.req("GET", f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
        children = {r["room_id"] for r in h.json().get("rooms", [])} if h.ok else set()
        public = {rooms[ch["id"]] for ch in fixture["channels"]
                  if ch["team_id"] == team["id"] and ch["type"] == "O"}
        check(f"space {team['name']}: /hierarchy lists its public channels", public <= children,
              f"{len(public & children)}/{len(public)}")

    # Every channel's history: events, order, senders, times, threads, reactions, files, pins.
    member_of = {}
    for ch in fixture["channels"]:  # D and G channels included
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
        c = member_of[post_channel[root]]
        rel = c.relations(rooms[post_channel[root]], post_event[root], "m.thread") if c else []
        if not replies <= {e["event_id"] for e in rel}:  # a reply's file events come too
            bad.append(root)
    check(f"{len(roots)} threads: /relations m.thread gives every reply", roots and not bad, bad[:3])

    # Reactions: one m.annotation per live Mattermost reaction of a mapped post, by its user.
    want = sorted((post_event[pid], users[uid]) for pid, uid, _ in reactions if pid in post_event and uid in users)
    got = sorted((e["content"]["m.relates_to"]["event_id"], e["sender"]) for tl in timelines.values() for e in tl
                 if e["type"] == "m.reaction"
                 and e["content"].get("m.relates_to", {}).get("rel_type") == "m.annotation")
    check(f"{len(want)} reactions on their posts by their users", want and want == got, f"{len(got)} found")

    # Edits: the first version at CreateAt, later ones as m.replace at their times.
    for edit in fixture["edits"]:
        eid = post_event[edit["id"]]
        cid = post_channel[edit["id"]]
        c, rid = member_of[cid], rooms[cid]
        orig = c.get(f"/_matrix/client/v3/rooms/{q(rid)}/event/{q(eid)}")
        rel = c.relations(rid, eid, "m.replace")
        rel.sort(key=lambda e: e["origin_server_ts"])
        bodies = [orig["content"]["body"]] + [e["content"]["m.new_content"]["body"] for e in rel]
        times = [orig["origin_server_ts"]] + [e["origin_server_ts"] for e in rel]
        check(f"post {edit['id']}: every version, each at its time",
              bodies == edit["versions"] and times == edit["times"], bodies)

    # Deleted posts: left out (`--deleted omit`) or served redacted (`--deleted redact`), never
    # with their text.
    deleted = psql(a.pg_url, "SELECT id, channelid, message FROM posts WHERE deleteat > 0 AND originalid = ''")
    live_texts = {p[7] for p in posts}
    bodies = {e["content"].get("body") for tl in timelines.values() for e in tl}
    shown = [pid for pid, _, text in deleted if text in bodies and text not in live_texts]
    for pid, cid, _ in deleted:
        if pid in post_event:
            e = member_of[cid].get(f"/_matrix/client/v3/rooms/{q(rooms[cid])}/event/{q(post_event[pid])}")
            if e.get("content") or not e.get("unsigned", {}).get("redacted_because"):
                shown.append(pid)
    redacted = sum(pid in post_event for pid, _, _ in deleted)
    check(f"{len(deleted)} deleted posts: {redacted} served redacted, the rest absent; no timeline has their text",
          deleted and not shown, shown[:3])
    gone = psql(a.pg_url, "SELECT f.id FROM fileinfo f JOIN posts p ON p.id = f.postid "
                "WHERE f.deleteat > 0 OR p.deleteat > 0")
    served = [fid for (fid,) in gone
              if alice.req("GET", f"/_matrix/client/v1/media/download/{server}/mm_file_{fid}").ok]
    check(f"{len(gone)} deleted files are not served", gone and not served, served)

    # Files: an m.image/m.file event per live file, its bytes the file store's.
    for fid, postid, name, path, mime, size, width, height in files:
        if postid not in post_event:
            check(f"file {name} of a left-out post is reported", postid in skipped)
            continue
        url = f"mxc://{server}/mm_file_{fid}"
        e = next((e for e in timelines.get(post_channel[postid], []) if e["content"].get("url") == url), None)
        if not check(f"file {name} is an event in its post's room", e is not None):
            continue
        blob = read(os.path.join(fixture["files_dir"], path), "rb")
        got = alice.req("GET", "/_matrix/client/v1/media/download/" + e["content"]["url"][6:])
        legacy = requests.get(a.conduit + "/_matrix/media/v3/download/" + e["content"]["url"][6:], timeout=30)
        info = e["content"].get("info", {})
        check(f"file {name}: same bytes on both media endpoints, size and type",
              got.ok and got.content == blob and legacy.content == blob and info.get("size") == int(size)
              and info.get("mimetype") == mime, f"{got.status_code} {info.get('mimetype')}")
        if mime.startswith("image/"):
            check(f"image {name}: msgtype m.image, {width}×{height}", e["content"]["msgtype"] == "m.image"
                  and info.get("w") == int(width) and info.get("h") == int(height), info)
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
            # For every member, its channel admins included: a message is refused.
            for name in ch["members"]:
                if name in tokens:
                    r = Client(a.conduit, tokens[name]).req(
                        "PUT", f"/_matrix/client/v3/rooms/{q(rid)}/send/m.room.message/e2e-{time.time_ns()}",
                        json={"msgtype": "m.text", "body": "posting into an archived channel"})
                    check(f"archived {ch['name']}: {name} cannot post", r.status_code == 403, r.status_code)
        if ch["type"] in "OP":
            header, purpose = ch["header"], ch["purpose"]
            want = "\n\n".join(t for t in (header, purpose) if t)
            st = c.req("GET", f"/_matrix/client/v3/rooms/{q(rid)}/state/m.room.topic/")
            got = st.json().get("topic", "") if st.ok else ""
            check(f"room {ch['name']}: the topic is the header, then the purpose", got == want, repr(got))

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
    if admin_room:
        cmd = sysadmin.req("PUT", f"/_matrix/client/v3/rooms/{q(admin_room)}/send/m.room.message/e2e-{time.time_ns()}",
                           json={"msgtype": "m.text", "body": f"@conduit:{server}: list-local-users"})
        answer = ""
        for _ in range(20):
            chunk = sysadmin.get(f"/_matrix/client/v3/rooms/{q(admin_room)}/messages",
                                 params={"dir": "b", "limit": 1})["chunk"]
            if cmd.ok and chunk and chunk[0]["sender"] == f"@conduit:{server}" \
                    and chunk[0]["event_id"] != cmd.json()["event_id"]:
                answer = chunk[0]["content"].get("body", "")
                break
            time.sleep(0.5)
        active = {f"@{u['username']}:{server}" for u in fixture["users"] if not u["deactivated"]}
        unlisted = [u for u in users.values() if u in active and u not in answer]
        check("the admin command list-local-users, sent now, is answered with every active migrated user",
              answer and not unlisted, unlisted[:3])

    print(f"{check.passed}/{check.total} passed")
    return 0 if check.passed == check.total else 1


if __name__ == "__main__":
    sys.exit(main())
