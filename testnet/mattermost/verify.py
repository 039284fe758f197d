#!/usr/bin/env python3
"""Check the running Mattermost test databases, file store and export against fixture.json.

    verify.py FIXTURE_JSON PG_PORT MYSQL_PORT     (connects as mmuser over 127.0.0.1)
"""
import json
import os
import struct
import subprocess
import sys
import zipfile

fx = json.load(open(sys.argv[1]))
pg_port, my_port = sys.argv[2], sys.argv[3]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL", what)


def pg(sql):
    out = subprocess.run(["psql", "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          f"postgresql://mmuser:mostest@127.0.0.1:{pg_port}/mattermost?sslmode=disable", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [l.split("\t") for l in out.splitlines()]


def my(sql):
    out = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", my_port, "-u", "mmuser", "-pmostest",
                          "-N", "-B", "mattermost", "-e", sql], check=True, capture_output=True, text=True).stdout
    return [l.split("\t") for l in out.splitlines()]


TABLE_MY = {"users": "Users", "bots": "Bots", "teams": "Teams", "teammembers": "TeamMembers", "channels": "Channels",
            "channelmembers": "ChannelMembers", "channelmemberhistory": "ChannelMemberHistory", "posts": "Posts",
            "postspriority": "PostsPriority", "threads": "Threads", "fileinfo": "FileInfo", "reactions": "Reactions",
            "emoji": "Emoji", "preferences": "Preferences", "sidebarcategories": "SidebarCategories",
            "sidebarchannels": "SidebarChannels", "systems": "Systems", "db_migrations": "db_migrations",
            "configurations": "Configurations"}

# 1. row counts per table
for t, n in fx["totals"].items():
    check(int(pg(f"SELECT count(*) FROM {t}")[0][0]) == n, f"pg {t} rows != {n}")
    check(int(my(f"SELECT COUNT(*) FROM {TABLE_MY[t]}")[0][0]) == n, f"mysql {TABLE_MY[t]} rows != {n}")

# 2. per channel: live post ids in (createat, id) order, counts
for c in fx["channels"]:
    q_pg = ("SELECT id FROM posts WHERE channelid = '%s' AND deleteat = 0 AND originalid = '' "
            "ORDER BY createat, id" % c["id"])
    q_my = ("SELECT Id FROM Posts WHERE ChannelId = '%s' AND DeleteAt = 0 AND OriginalId = '' "
            "ORDER BY CreateAt, Id" % c["id"])
    check([r[0] for r in pg(q_pg)] == c["post_ids"], f"pg post order {c['name']}")
    check([r[0] for r in my(q_my)] == c["post_ids"], f"mysql post order {c['name']}")
    k = c["counts"]
    r = pg(f"""SELECT count(*) FILTER (WHERE rootid <> ''), count(*) FILTER (WHERE editat > 0),
               count(*) FILTER (WHERE ispinned), count(*) FILTER (WHERE type LIKE 'system\\_%')
               FROM posts WHERE channelid = '{c['id']}' AND deleteat = 0 AND originalid = ''""")[0]
    check(list(map(int, r)) == [k["replies"], k["edited"], k["pinned"], k["system_posts"]], f"pg counts {c['name']} {r}")
    r = my(f"""SELECT SUM(RootId <> ''), SUM(EditAt > 0), SUM(IsPinned), SUM(Type LIKE 'system\\_%%')
               FROM Posts WHERE ChannelId = '{c['id']}' AND DeleteAt = 0 AND OriginalId = ''""")[0]
    check([int(x if x != "NULL" else 0) for x in r] == [k["replies"], k["edited"], k["pinned"], k["system_posts"]],
          f"mysql counts {c['name']} {r}")
    n = pg(f"""SELECT count(*) FROM reactions r JOIN posts p ON p.id = r.postid WHERE p.channelid = '{c['id']}'
               AND p.deleteat = 0 AND COALESCE(r.deleteat, 0) = 0""")[0][0]
    check(int(n) == k["reactions"], f"pg reactions {c['name']}")
    n = my(f"""SELECT COUNT(*) FROM Reactions r JOIN Posts p ON p.Id = r.PostId WHERE p.ChannelId = '{c['id']}'
               AND p.DeleteAt = 0 AND COALESCE(r.DeleteAt, 0) = 0""")[0][0]
    check(int(n) == k["reactions"], f"mysql reactions {c['name']}")
    t = pg(f"SELECT type::text, name FROM channels WHERE id = '{c['id']}'")[0]
    check(t == [c["type"], c["name"]], f"pg channel type/name {c['name']}")
    t = my(f"SELECT Type, Name FROM Channels WHERE Id = '{c['id']}'")[0]
    check(t == [c["type"], c["name"]], f"mysql channel type/name {c['name']}")

# 3. edit history, JSON columns and enum decoding
for e in fx["edits"]:
    hist = [r[0] for r in pg(f"SELECT message FROM posts WHERE originalid = '{e['id']}' ORDER BY deleteat")]
    check(hist + [pg(f"SELECT message FROM posts WHERE id = '{e['id']}'")[0][0]] == e["history"], "pg edit history")
check(pg("SELECT count(*) FROM posts WHERE props->>'override_username' = 'ci-notifier'")[0][0] == "1", "pg jsonb")
check(my("SELECT COUNT(*) FROM Posts WHERE JSON_VALUE(Props, '$.override_username') = 'ci-notifier'")[0][0] == "1",
      "mysql json")
check(pg("SELECT max(version) FROM db_migrations")[0][0] == "159", "db_migrations")

# 4. file store: every live fileinfo file exists with its size; images are real
files_dir = fx["files_dir"]


def image_size(path):
    b = open(path, "rb").read(32)
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        return "png", struct.unpack(">II", b[16:24])
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", struct.unpack("<HH", b[6:10])
    return None, None


for f in fx["files"]:
    p = os.path.join(files_dir, f["path"])
    check(os.path.isfile(p) and os.path.getsize(p) == f["size"], f"file {f['path']}")
    if f["mime_type"].startswith("image/"):
        check(image_size(p) == ("png", (f["width"], f["height"])), f"image header {f['name']}")
        kind, (tw, th) = image_size(os.path.join(files_dir, f["thumbnail_path"]))
        check(kind == "png" and tw <= 120 and th <= 100, f"thumbnail {f['name']}")
        check(image_size(os.path.join(files_dir, f["preview_path"]))[0] == "png", f"preview {f['name']}")
for e in fx["emoji"]:
    check(image_size(os.path.join(files_dir, e["path"]))[0] in ("png", "gif"), f"emoji {e['name']}")
for u in fx["users"]:
    if u["profile_picture"]:
        check(image_size(os.path.join(files_dir, u["profile_picture"]))[0] == "png", f"avatar {u['username']}")

# 5. bulk export
z = zipfile.ZipFile(os.path.join(files_dir, fx["export"]["zip"]))
names = set(z.namelist())
lines = [json.loads(l) for l in z.read("import.jsonl").decode().splitlines()]
check(lines[0]["type"] == "version", "export starts with version")
kinds = {}
for l in lines:
    kinds[l["type"]] = kinds.get(l["type"], 0) + 1
check(kinds == fx["export"]["lines"], f"export line kinds {kinds}")
for p in fx["export"]["data_files"]:
    check("data/" + p in names, f"export data/{p}")
for l in lines:
    body = l.get("post") or l.get("direct_post")
    for item in ([body] + (body.get("replies") or [])) if body else []:
        for a in item.get("attachments") or []:
            check("data/" + a["path"] in names, f"export attachment {a['path']}")

print(f"{len(failures) == 0 and 'OK' or 'FAILED'}: {len(failures)} failures; "
      f"{sum(fx['totals'].values())} rows, {len(fx['files'])} files, {len(lines)} export lines checked")
sys.exit(1 if failures else 0)
