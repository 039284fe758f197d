"""Small idempotent steps run by `synapse.sh up` on every run.

  python -m populate.fixup whitelist-admin   # TM_INSTANCE=.testnet/whitelist: ensure @oadmin + admin.json
  python -m populate.fixup scenario          # TM_INSTANCE=.testnet/main: refresh paths/URLs/whitelist/hash
"""
import json
import os
import sys

from .common import PASSWORDS, Api, ApiError, Instance, password_login, register_shared_secret, \
    write_private_json


def whitelist_admin():
    inst = Instance()
    path = os.path.join(inst.dir, "admin.json")
    if os.path.exists(path):
        with open(path) as f:
            token = json.load(f).get("access_token")
        try:
            Api(inst.url, token).c("GET", "/account/whoami")
            return
        except ApiError:
            pass
    try:
        token = register_shared_secret(inst, "oadmin", PASSWORDS["oadmin"], admin=True)["access_token"]
    except ApiError as e:
        if "M_USER_IN_USE" not in str(e):
            raise
        token = password_login(inst, "oadmin", PASSWORDS["oadmin"])["access_token"]
    write_private_json(path, {"user_id": inst.uid("oadmin"), "password": PASSWORDS["oadmin"],
                              "access_token": token})


def scenario():
    inst = Instance()
    path = os.path.join(inst.dir, "scenario.json")
    with open(path) as f:
        s = json.load(f)
    s.update({"client_url": inst.url, "federation_url": inst.url,
              "client_only_url": f"http://127.0.0.1:{inst.port + 1}",
              "homeserver_yaml": inst.yaml_path, "signing_key_path": inst.signing_key_path,
              "database": inst.database, "media_store": inst.media_store})
    if os.environ.get("TM_SCENARIO_HASH"):
        s["scenario_hash"] = os.environ["TM_SCENARIO_HASH"]
    wdir = os.path.join(os.path.dirname(inst.dir), "whitelist")
    if os.path.exists(os.path.join(wdir, "admin.json")):
        w = Instance(wdir, inst.port + 10)
        with open(os.path.join(wdir, "admin.json")) as f:
            admin = json.load(f)
        s["whitelist"] = {"server_name": w.server_name, "client_url": w.url,
                          "federation_url": w.url, "homeserver_yaml": w.yaml_path,
                          "signing_key_path": w.signing_key_path, "admin": admin}
    write_private_json(path, s)


if __name__ == "__main__":
    {"whitelist-admin": whitelist_admin, "scenario": scenario}[sys.argv[1]]()
