"""HTTP client, instance config and small deterministic helpers shared by the populator."""
import hashlib
import hmac
import itertools
import json
import os
import struct
import threading
import time
import urllib.parse
import zlib

import requests
import yaml

TIMEOUT = 30  # seconds, on every HTTP call

# Test-only, deterministic credentials. Never printed.
PASSWORDS = {name: f"tm-{name}-Passw0rd!" for name in
             ("oadmin", "alice", "bob", "carol", "dave", "frank", "eve", "erin")}


def q(s):
    """Percent-encode one path segment (user IDs, room IDs, event IDs)."""
    return urllib.parse.quote(s, safe="")


class ApiError(Exception):
    pass


class Api:
    """A tiny Matrix HTTP client: one session, optional bearer token, bounded 429 retries."""

    _txn = itertools.count(1)
    _txn_lock = threading.Lock()

    def __init__(self, base, token=None):
        self.base = base.rstrip("/")
        self.token = token
        self.s = requests.Session()

    def txn(self):
        with Api._txn_lock:
            return f"tmtxn{next(Api._txn)}"

    def call(self, method, path, body=None, *, params=None, data=None, ctype=None,
             ok=(200,), timeout=TIMEOUT):
        headers = {}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if ctype:
            headers["Content-Type"] = ctype
        for attempt in range(10):
            try:
                r = self.s.request(method, self.base + path, params=params, headers=headers,
                                   json=body if data is None else None, data=data, timeout=timeout)
            except requests.ConnectionError:
                if attempt >= 3:
                    raise
                time.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code == 429 and attempt < 9:
                try:
                    ms = r.json().get("retry_after_ms", 500)
                except ValueError:
                    ms = 500
                time.sleep(min(max(ms, 50), 10000) / 1000)
                continue
            break
        if r.status_code not in ok:
            # Error bodies never contain tokens; the path has no query (tokens never go there).
            raise ApiError(f"{method} {path} -> {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else {}

    # Client API shorthands
    def c(self, method, path, body=None, **kw):
        return self.call(method, "/_matrix/client/v3" + path, body, **kw)


class Instance:
    """The facts about one Synapse instance the populator needs, read from its config."""

    def __init__(self, inst_dir=None, port=None):
        self.dir = os.path.abspath(inst_dir or os.environ["TM_INSTANCE"])
        self.port = int(port or os.environ["TM_PORT"])
        self.yaml_path = os.path.join(self.dir, "homeserver.yaml")
        with open(self.yaml_path) as f:
            cfg = yaml.safe_load(f)
        self.server_name = cfg["server_name"]
        self.secret = cfg["registration_shared_secret"]
        self.signing_key_path = cfg["signing_key_path"]
        self.database = cfg["database"]["args"]["database"]
        self.media_store = cfg["media_store_path"]
        self.url = f"http://127.0.0.1:{self.port}"

    def uid(self, local):
        return f"@{local}:{self.server_name}"


def register_shared_secret(inst, user, password, admin):
    """Shared-secret registration (what register_new_matrix_user does)."""
    api = Api(inst.url)
    nonce = api.call("GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(inst.secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), user.encode(), password.encode(),
                             b"admin" if admin else b"notadmin"]))
    return api.call("POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": user, "password": password, "admin": admin,
        "mac": mac.hexdigest()})


def password_login(inst, local, password, device_id=None, display=None):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
            "password": password}
    if device_id:
        body["device_id"] = device_id
        body["initial_device_display_name"] = display or device_id
    return Api(inst.url).c("POST", "/login", body)


def png(seed, w=16, h=16):
    """A small, valid, deterministic RGB PNG whose pixels depend on `seed`."""
    d = hashlib.sha256(seed.encode()).digest()
    raw = b"".join(
        b"\x00" + bytes(v for x in range(w)
                        for v in (d[(x + y) % 32], d[(x * 3 + y * 5) % 32], (x * 16 + y * 8) & 255))
        for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_private_json(path, obj):
    """Write JSON atomically with mode 0600 (it holds passwords and tokens)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
