"""The rooms of the scenario. Every function takes `u` (name -> User) and returns a room ID."""
import math
import os
import threading

from . import e2e
from .common import q


def send(user, room, content, etype="m.room.message"):
    return user.api.c("PUT", f"/rooms/{q(room)}/send/{q(etype)}/{q(user.api.txn())}",
                      content)["event_id"]


def text(user, room, body):
    return send(user, room, {"msgtype": "m.text", "body": body})


def state(user, room, etype, content, key=""):
    return user.api.c("PUT", f"/rooms/{q(room)}/state/{q(etype)}/{q(key)}", content)["event_id"]


def create(user, **body):
    return user.api.c("POST", "/createRoom", body)["room_id"]


def join(user, room):
    user.api.c("POST", f"/join/{q(room)}", {})


def leave(user, room):
    user.api.c("POST", f"/rooms/{q(room)}/leave", {})


def redact(user, room, event_id, reason):
    user.api.c("PUT", f"/rooms/{q(room)}/redact/{q(event_id)}/{q(user.api.txn())}",
               {"reason": reason})


def react(user, room, event_id, key):
    send(user, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id,
                                       "key": key}}, "m.reaction")


def upload(user, data, name, ctype="image/png"):
    return user.api.call("POST", "/_matrix/media/v3/upload", params={"filename": name},
                         data=data, ctype=ctype)["content_uri"]


def public(u, png):
    a, b, c, d = u["alice"], u["bob"], u["carol"], u["dave"]
    room = create(a, preset="public_chat", visibility="public", room_alias_name="lobby",
                  name="Lobby", topic="Everything and nothing")
    for name in ("bob", "carol", "dave", "erin", "eve"):
        join(u[name], room)
    senders = [u[n] for n in ("alice", "bob", "carol", "dave", "erin", "eve")]
    ids = [text(senders[i % 6], room, f"lobby message {i} from {senders[i % 6].name}")
           for i in range(40)]
    # An image with an uploaded PNG.
    img = png("public-room-image", 32, 24)
    url = upload(a, img, "picture.png")
    image = send(a, room, {"msgtype": "m.image", "body": "picture.png", "url": url,
                           "info": {"w": 32, "h": 24, "mimetype": "image/png", "size": len(img)}})
    # An edit.
    typo = text(b, room, "helo everyone")
    send(b, room, {"msgtype": "m.text", "body": "* hello everyone",
                   "m.new_content": {"msgtype": "m.text", "body": "hello everyone"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": typo}})
    # Reactions.
    react(c, room, image, "👍")
    react(d, room, image, "🎉")
    react(a, room, typo, "👋")
    # A reply.
    send(c, room, {"msgtype": "m.text", "body": "> <@alice:example.test> lobby message 0\n\nreplying",
                   "m.relates_to": {"m.in_reply_to": {"event_id": ids[0]}}})
    # A thread: root + 4 replies.
    root = text(a, room, "thread root: what shall we migrate?")
    last = root
    for i, who in enumerate((b, c, a, d)):
        last = send(who, room, {"msgtype": "m.text", "body": f"thread reply {i}",
                                "m.relates_to": {"rel_type": "m.thread", "event_id": root,
                                                 "is_falling_back": True,
                                                 "m.in_reply_to": {"event_id": last}}})
    # Two redactions.
    redact(a, room, text(a, room, "oops, wrong room"), "wrong room")
    redact(b, room, ids[1], "no longer relevant")
    # State changes.
    state(a, room, "m.room.topic", {"topic": "Migration test lobby"})
    state(a, room, "m.room.name", {"name": "The Lobby"})
    state(a, room, "m.room.avatar", {"url": upload(a, png("lobby-avatar"), "lobby.png")})
    for i in range(5):
        text(u["erin"], room, f"erin says {i}")
        text(u["eve"], room, f"eve says {i}")
    return room


def private(u):
    a, b, c, d = u["alice"], u["bob"], u["carol"], u["dave"]
    room = create(a, preset="private_chat", name="Private", invite=[b.user_id, d.user_id])
    join(b, room)
    join(d, room)
    for i in range(14):
        who = (a, b, d)[i % 3]
        text(who, room, f"private message {i} from {who.name}")
    leave(d, room)
    for i in range(14, 20):
        who = (a, b)[i % 2]
        text(who, room, f"private message {i} from {who.name}")
    # Pending invite, never accepted.
    a.api.c("POST", f"/rooms/{q(room)}/invite", {"user_id": c.user_id})
    return room


def dm(u):
    a, c = u["alice"], u["carol"]
    room = create(a, preset="trusted_private_chat", is_direct=True, invite=[c.user_id])
    join(c, room)
    for i in range(10):
        who = (a, c)[i % 2]
        text(who, room, f"dm {i} from {who.name}")
    a.api.c("PUT", f"/user/{q(a.user_id)}/account_data/m.direct", {c.user_id: [room]})
    c.api.c("PUT", f"/user/{q(c.user_id)}/account_data/m.direct", {a.user_id: [room]})
    return room


def encrypted(u):
    a, b = u["alice"], u["bob"]
    room = create(a, preset="private_chat", name="Secret", invite=[b.user_id],
                  initial_state=[{"type": "m.room.encryption", "state_key": "",
                                  "content": {"algorithm": e2e.MEGOLM}}])
    join(b, room)
    for i in range(10):
        who = (a, b)[i % 2]
        send(who, room, e2e.encrypted_content(who.user_id, who.first_device, i), "m.room.encrypted")
    return room


def abandoned(u):
    a, b = u["alice"], u["bob"]
    room = create(a, preset="private_chat", name="Abandoned", invite=[b.user_id])
    join(b, room)
    for i in range(10):
        who = (a, b)[i % 2]
        text(who, room, f"abandoned {i} from {who.name}")
    leave(b, room)
    leave(a, room)
    return room


def v10(u):
    a, b = u["alice"], u["bob"]
    room = create(a, preset="private_chat", name="Old version", room_version="10",
                  invite=[b.user_id])
    join(b, room)
    for i in range(20):
        who = (a, b)[i % 2]
        text(who, room, f"v10 message {i} from {who.name}")
    return room


def big_room(u, n=600):
    a = u["alice"]
    room = create(a, preset="private_chat", name="Big")
    for i in range(n):
        text(a, room, f"big message {i}")
    return room


def huge_room_start(u):
    a = u["alice"]
    room = create(a, preset="private_chat", name="Huge",
                  invite=[u["bob"].user_id, u["carol"].user_id])
    join(u["bob"], room)
    join(u["carol"], room)
    # Let every member change the topic, so concurrent topic changes conflict at DAG merges and
    # the dump's state resolution has real work to do.
    pl = a.api.c("GET", f"/rooms/{q(room)}/state/m.room.power_levels/")
    pl.setdefault("events", {})["m.room.topic"] = 0
    state(a, room, "m.room.power_levels", pl)
    return room


def huge_room_fill(u, room, total):
    """alice, bob and carol send concurrently, so the DAG forks (several prev_events)."""
    senders = [u["alice"].clone(), u["bob"].clone(), u["carol"].clone()]
    per = math.ceil(total / len(senders))
    errors = []

    def run(user):
        try:
            for i in range(per):
                if i % 250 == 100:
                    state(user, room, "m.room.topic", {"topic": f"topic {i} by {user.name}"})
                text(user, room, f"huge {i} from {user.name}")
        except Exception as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    return threads, errors


def huge_events():
    return int(os.environ.get("TM_HUGE_EVENTS", "5000"))
