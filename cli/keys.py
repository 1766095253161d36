"""`storypulse keys`: make, list and authorise the CURVE keys a server off loopback requires.

The key files and where they live are the core's (storypulse.security); this
is the command that writes them.
"""

from __future__ import annotations

import argparse
import shutil
import socket
from pathlib import Path

import zmq.auth

from storypulse.security import ENV_KEYS, default_key_dir


def keys_command(argv: list[str]) -> int:
    """Make and list the CURVE keys that a server off loopback requires."""
    parser = argparse.ArgumentParser(prog="storypulse keys", description=keys_command.__doc__)
    parser.add_argument("action", choices=["init", "show", "authorize"], help=(
        "init: make the server and client pairs that are missing and authorise this client; "
        "show: print the key folder and public keys; authorize FILE: admit a client's public key"))
    parser.add_argument("file", nargs="?", help="with authorize: a client's .key file")
    parser.add_argument("--dir", type=Path, default=None, help=f"key folder (default: ${ENV_KEYS} or the user config dir)")
    args = parser.parse_args(argv)
    key_dir: Path = args.dir or default_key_dir()
    authorized = key_dir / "authorized"
    if args.action == "init":
        key_dir.mkdir(parents=True, exist_ok=True)
        authorized.mkdir(exist_ok=True)
        for name in ("server", "client"):
            if not (key_dir / f"{name}.key_secret").exists():
                zmq.auth.create_certificates(str(key_dir), name)
                print(f"made {key_dir / name}.key and {name}.key_secret")
        shutil.copy(key_dir / "client.key", authorized / f"{socket.gethostname()}.key")
        print(f"authorised this machine's client key in {authorized}")
        print("give remote clients server.key plus a client pair; authorise their client.key on the server")
        return 0
    if args.action == "authorize":
        if not args.file or not Path(args.file).is_file():
            parser.error("authorize needs an existing .key file")
        authorized.mkdir(parents=True, exist_ok=True)
        target = authorized / Path(args.file).name
        shutil.copy(args.file, target)
        print(f"authorised {target}")
        return 0
    print(f"key folder: {key_dir}")
    for path in sorted(key_dir.glob("*.key")) + sorted(authorized.glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        print(f"  {path.relative_to(key_dir)}  {public.decode()}")
    return 0
