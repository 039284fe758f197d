"""End-to-end encryption data with real ed25519 signatures (deterministic keys).

Keys are derived from sha256 seeds, so the same scenario always uploads the same keys.
"""
import copy
import hashlib

from nacl.public import PrivateKey
from nacl.signing import SigningKey
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from .common import q

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
BACKUP_ALGO = "m.megolm_backup.v1.curve25519-aes-sha2"


def seed(*parts):
    return hashlib.sha256("/".join(parts).encode()).digest()


def b64(*parts, n=32):
    """Deterministic unpadded base64 of n pseudo-random bytes."""
    out = b""
    while len(out) < n:
        out += seed(*parts, str(len(out)))
    return encode_base64(out[:n])


def ed_key(*parts, version=None):
    """A signedjson-compatible signing key (nacl key + alg/version attributes)."""
    k = SigningKey(seed(*parts))
    k.alg = "ed25519"
    k.version = version or encode_base64(k.verify_key.encode())
    return k


def pub(k):
    return encode_base64(k.verify_key.encode())


def curve(*parts):
    return encode_base64(PrivateKey(seed(*parts)).public_key.encode())


def upload_device_keys(api, user_id, device_id, fallback):
    """Device keys + 5 signed OTKs (+ a fallback key). Returns (device_keys, signing key)."""
    sk = ed_key(user_id, device_id, "ed25519", version=device_id)
    dk = sign_json({
        "user_id": user_id, "device_id": device_id, "algorithms": [OLM, MEGOLM],
        "keys": {f"curve25519:{device_id}": curve(user_id, device_id, "curve25519"),
                 f"ed25519:{device_id}": pub(sk)},
    }, user_id, sk)
    otks = {}
    for i in range(1, 6):
        kid = encode_base64(i.to_bytes(4, "big"))  # libolm-style ids: AAAAAQ, AAAAAg, ...
        otks[f"signed_curve25519:{kid}"] = sign_json(
            {"key": curve(user_id, device_id, "otk", str(i))}, user_id, sk)
    body = {"device_keys": dk, "one_time_keys": otks}
    if fallback:
        body["fallback_keys"] = {"signed_curve25519:AAAAZg": sign_json(
            {"key": curve(user_id, device_id, "fallback"), "fallback": True}, user_id, sk)}
    counts = api.c("POST", "/keys/upload", body)["one_time_key_counts"]
    assert counts.get("signed_curve25519") == 5, counts
    return dk, sk


def cross_signing(api, local, user_id, password):
    """Upload master/self-signing/user-signing keys (SSK and USK signed by the master key)."""
    mk = ed_key(user_id, "master")
    ssk = ed_key(user_id, "self_signing")
    usk = ed_key(user_id, "user_signing")

    def key(usage, k):
        return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub(k)}": pub(k)}}

    body = {"master_key": key("master", mk),
            "self_signing_key": sign_json(key("self_signing", ssk), user_id, mk),
            "user_signing_key": sign_json(key("user_signing", usk), user_id, mk)}
    auth = {"type": "m.login.password", "password": password,
            "identifier": {"type": "m.id.user", "user": local}}
    # Synapse may skip UIA for a first upload (MSC3967); otherwise it answers 401 + session.
    r = api.c("POST", "/keys/device_signing/upload", body, ok=(200, 401))
    if "session" in r and "flows" in r:
        api.c("POST", "/keys/device_signing/upload", dict(body, auth=dict(auth, session=r["session"])))
    return {"master": mk, "self_signing": ssk, "user_signing": usk, "master_key": body["master_key"]}


def sign_device(api, user_id, device_keys, ssk):
    """The user's self-signing key signs one of their devices."""
    dk = {k: v for k, v in copy.deepcopy(device_keys).items() if k not in ("signatures", "unsigned")}
    signed = sign_json(dk, user_id, ssk)
    r = api.c("POST", "/keys/signatures/upload", {user_id: {dk["device_id"]: signed}})
    assert not r.get("failures"), r


def sign_other_master(api, user_id, usk, other_id, other_master_key):
    """The user's user-signing key signs another user's master key (a 'verified' user)."""
    mk = {k: v for k, v in copy.deepcopy(other_master_key).items() if k != "signatures"}
    signed = sign_json(mk, user_id, usk)
    mk_pub = next(iter(mk["keys"].values()))
    r = api.c("POST", "/keys/signatures/upload", {other_id: {mk_pub: signed}})
    assert not r.get("failures"), r


def key_backup(api, user_id, device_id, device_sk, rooms):
    """A backup version with a fake public key, and fake but well-formed sessions."""
    auth_data = sign_json({"public_key": b64(user_id, "backup-pub")}, user_id, device_sk)
    version = api.c("POST", "/room_keys/version",
                    {"algorithm": BACKUP_ALGO, "auth_data": auth_data})["version"]
    body = {"rooms": {}}
    n = 0
    for room_id in rooms:
        sessions = {}
        for i in range(3):
            sid = b64(room_id, "session", str(i))
            sessions[sid] = {"first_message_index": i, "forwarded_count": 0, "is_verified": i == 0,
                             "session_data": {"ephemeral": b64(sid, "eph"),
                                              "ciphertext": b64(sid, "ct", n=96),
                                              "mac": b64(sid, "mac", n=8)}}
            n += 1
        body["rooms"][room_id] = {"sessions": sessions}
    r = api.c("PUT", "/room_keys/keys", body, params={"version": version})
    assert r.get("count") == n, r
    return version


def to_device(api, sender_device, target_user, target_device):
    """A pending m.room_key_request for a device that will never sync."""
    msg = {"action": "request", "request_id": "tmreq1", "requesting_device_id": sender_device,
           "body": {"algorithm": MEGOLM, "room_id": "!unknown", "sender_key": curve("x"),
                    "session_id": b64("tm-session")}}
    api.c("PUT", f"/sendToDevice/m.room_key_request/{q(api.txn())}",
          {"messages": {target_user: {target_device: msg}}})


def encrypted_content(user_id, device_id, i):
    return {"algorithm": MEGOLM, "sender_key": curve(user_id, device_id, "curve25519"),
            "ciphertext": b64(user_id, "ciphertext", str(i), n=120),
            "session_id": b64(user_id, "megolm-session"), "device_id": device_id}
