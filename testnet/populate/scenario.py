"""Fill the `main` instance with the deterministic scenario and write scenario.json.

Run as `python -m populate.scenario` with TM_INSTANCE and TM_PORT set (synapse.sh does it).
Everything goes through Synapse's real client and admin HTTP APIs.
"""
import os
import sqlite3
import sys
import time

from . import e2e, rooms
from .common import PASSWORDS, Api, Instance, password_login, png, q, register_shared_secret, \
    write_private_json

# name -> (display name, devices, avatar?, email)
USERS = {
    "alice": ("Alice Wonder", ["ALICEPHONE", "ALICELAPTOP"], True, "alice@example.test"),
    "bob": ("Bob Builder", ["BOBPHONE", "BOBLAPTOP"], True, "bob@example.test"),
    "carol": ("Carol Singer", ["CAROLPHONE", "CAROLLAPTOP"], True, None),
    "dave": ("Dave Diver", ["DAVEPHONE", "DAVELAPTOP"], True, None),
    "frank": ("Frank Furter", ["FRANKPHONE", "FRANKLAPTOP"], True, None),
    "eve": ("Eve Dropper", ["EVEPHONE"], False, None),      # deactivated later
    "erin": ("Erin Erased", ["ERINPHONE"], False, None),    # deactivated + erased later
}


class User:
    def __init__(self, inst, name):
        self.inst, self.name, self.user_id = inst, name, inst.uid(name)
        self.password = PASSWORDS[name]
        self.devices = {}  # device_id -> access token
        self.api = None    # Api with the first device's token
        self.first_device = None

    def clone(self):
        """Same user and token, own HTTP session (for threads)."""
        c = User(self.inst, self.name)
        c.devices, c.first_device = self.devices, self.first_device
        c.api = Api(self.inst.url, self.api.token)
        return c


def step(msg, t0=[time.time()]):  # noqa: B006 - deliberate static start time
    print(f"[populate] {time.time() - t0[0]:6.1f}s {msg}", file=sys.stderr, flush=True)


def make_users(inst, admin):
    u = {}
    for name, (display, devices, avatar, email) in USERS.items():
        user = User(inst, name)
        body = {"password": user.password, "displayname": display, "admin": False}
        if email:
            body["threepids"] = [{"medium": "email", "address": email}]
        admin.call("PUT", f"/_synapse/admin/v2/users/{q(user.user_id)}", body, ok=(200, 201))
        for dev in devices:
            r = password_login(inst, name, user.password, dev, f"{display.split()[0]}'s {dev[-5:].lower()}")
            user.devices[dev] = r["access_token"]
        user.first_device = devices[0]
        user.api = Api(inst.url, user.devices[devices[0]])
        if avatar:
            url = rooms.upload(user, png(f"avatar-{name}"), f"{name}.png")
            user.api.c("PUT", f"/profile/{q(user.user_id)}/avatar_url", {"avatar_url": url})
        u[name] = user
    return u


def encryption(u, room_ids):
    a, b, c = u["alice"], u["bob"], u["carol"]
    device_keys = {}
    for user in (a, b, c):
        for i, (dev, token) in enumerate(user.devices.items()):
            api = Api(user.inst.url, token)
            device_keys[dev] = e2e.upload_device_keys(api, user.user_id, dev, fallback=(i == 0))
    xs = {user.name: e2e.cross_signing(user.api, user.name, user.user_id, user.password)
          for user in (a, b)}
    e2e.sign_device(a.api, a.user_id, device_keys["ALICEPHONE"][0], xs["alice"]["self_signing"])
    e2e.sign_other_master(a.api, a.user_id, xs["alice"]["user_signing"], b.user_id,
                          xs["bob"]["master_key"])
    e2e.key_backup(a.api, a.user_id, "ALICEPHONE", device_keys["ALICEPHONE"][1],
                   [room_ids["public"], room_ids["encrypted"]])
    # Bob's second device must never /sync, so this stays in device_inbox.
    e2e.to_device(a.api, "ALICEPHONE", b.user_id, "BOBLAPTOP")


def account_data(u, room_ids):
    a = u["alice"]
    a.api.c("PUT", f"/user/{q(a.user_id)}/account_data/org.example.global", {"theme": "dark", "n": 1})
    a.api.c("PUT", f"/user/{q(a.user_id)}/rooms/{q(room_ids['public'])}/account_data/org.example.roomdata",
            {"note": "per-room note"})
    a.api.c("PUT", f"/user/{q(a.user_id)}/rooms/{q(room_ids['public'])}/tags/m.favourite", {"order": 0.25})
    a.api.c("PUT", "/pushrules/global/content/myrule",
            {"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]})
    # Set last, so Synapse does not try to push every populated message to port 9.
    a.api.c("POST", "/pushers/set", {
        "kind": "http", "app_id": "org.example.app", "pushkey": "alice-pushkey-1",
        "app_display_name": "Example App", "device_display_name": "Alice's phone", "lang": "en",
        "data": {"url": "http://127.0.0.1:9/_matrix/push/v1/notify", "format": "event_id_only"}})


def event_counts(inst, room_ids):
    db = sqlite3.connect(f"file:{inst.database}?mode=ro", uri=True)
    try:
        return {r: db.execute("SELECT count(*) FROM events WHERE room_id=?", (r,)).fetchone()[0]
                for r in room_ids.values()}
    finally:
        db.close()


def main():
    inst = Instance()
    out = os.path.join(inst.dir, "scenario.json")
    step(f"populating {inst.server_name} at {inst.url}")
    reg = register_shared_secret(inst, "oadmin", PASSWORDS["oadmin"], admin=True)
    admin = Api(inst.url, reg["access_token"])
    u = make_users(inst, admin)
    step("users, devices, avatars done")

    # The slow part runs in the background while everything else is created.
    room_ids = {"huge": rooms.huge_room_start(u)}
    threads, errors = rooms.huge_room_fill(u, room_ids["huge"], rooms.huge_events())
    room_ids["public"] = rooms.public(u, png)
    room_ids["private"] = rooms.private(u)
    room_ids["dm"] = rooms.dm(u)
    room_ids["encrypted"] = rooms.encrypted(u)
    room_ids["abandoned"] = rooms.abandoned(u)
    room_ids["v10"] = rooms.v10(u)
    step("small rooms done")
    encryption(u, room_ids)
    step("E2E keys, cross-signing, backup, to-device done")
    room_ids["big"] = rooms.big_room(u)
    step("big room done")
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    step("huge room done")
    account_data(u, room_ids)
    for name, erase in (("eve", False), ("erin", True)):
        admin.call("POST", f"/_synapse/admin/v1/deactivate/{q(u[name].user_id)}", {"erase": erase})
        u[name].devices = {}  # deactivation deletes devices and tokens

    versions = {k: admin.call("GET", f"/_synapse/admin/v1/rooms/{q(r)}")["version"]
                for k, r in room_ids.items()}
    counts = event_counts(inst, room_ids)
    assert counts[room_ids["huge"]] >= rooms.huge_events(), counts
    scenario = {
        "server_name": inst.server_name,
        "client_url": inst.url, "federation_url": inst.url,
        "client_only_url": f"http://127.0.0.1:{inst.port + 1}",
        "homeserver_yaml": inst.yaml_path, "signing_key_path": inst.signing_key_path,
        "database": inst.database, "media_store": inst.media_store,
        "admin": {"user_id": inst.uid("oadmin"), "password": PASSWORDS["oadmin"],
                  "access_token": reg["access_token"]},
        "users": {n: {"user_id": x.user_id, "password": x.password,
                      "deactivated": n in ("eve", "erin"), "erased": n == "erin",
                      "devices": x.devices} for n, x in u.items()},
        "rooms": {k: {"room_id": r, "version": versions[k]} for k, r in room_ids.items()},
        "event_counts": counts,
        "whitelist": None,  # filled in by `fixup scenario`
        "populated_at_ms": int(time.time() * 1000),
        "scenario_hash": os.environ.get("TM_SCENARIO_HASH", ""),
    }
    write_private_json(out, scenario)
    step(f"wrote {out}; huge room has {counts[room_ids['huge']]} events")


if __name__ == "__main__":
    main()
