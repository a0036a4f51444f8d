"""Debian packages as data: download ``.deb`` files into a cache (never installed), unpack only
the members a source needs, read licences from the package's ``copyright`` file.

Only ``apt-get download`` touches the network; everything else works on a ``.deb`` file, so the
extraction is tested offline on a package built with ``dpkg-deb --build``.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

from .sources import CorpusError, check_allowed

__all__ = ["deb_path", "download", "extract", "licenses_for", "licenses_of", "package_section"]


def deb_path(debs: Path, package: str) -> Path | None:
    """The newest cached ``.deb`` of ``package`` (``apt-get download`` names it pkg_ver_arch)."""
    found = sorted(p for p in Path(debs).glob(f"{package}_*.deb")
                   if p.name.split("_", 1)[0] == package)
    return found[-1] if found else None


def package_section(package: str) -> str | None:
    """The archive section of ``package`` (``games``, ``non-free/games`` ...); None if unknown."""
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                       capture_output=True, text=True)
    m = re.search(r"^Section:\s*(\S+)", r.stdout, re.M)
    return m.group(1) if m else None


def download(packages: list[str], debs: Path, log=print) -> dict[str, Path]:
    """Fetch the ``.deb`` of each package not yet cached; returns those now present.

    Packages outside Debian main (``contrib/``, ``non-free/`` sections) are refused: their
    licences do not allow a training corpus anyone can rebuild.
    """
    check_allowed(*packages)
    debs = Path(debs)
    debs.mkdir(parents=True, exist_ok=True)
    os.chmod(debs, 0o755)  # apt's download user must be able to write here
    need = [p for p in packages if deb_path(debs, p) is None]
    for p in need:
        section = package_section(p)
        if section is None:
            log(f"skip {p}: not known to apt-cache")
            continue
        if "/" in section:
            log(f"skip {p}: section {section} is outside Debian main")
            continue
        r = subprocess.run(["apt-get", "download", "-q", p], cwd=debs, capture_output=True,
                           text=True)
        if r.returncode:
            log(f"skip {p}: apt-get download failed: {r.stderr.strip()[-200:]}")
    return {p: d for p in packages if (d := deb_path(debs, p)) is not None}


def _wanted(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def extract(deb: Path, out: Path, patterns: list[str], package: str | None = None) -> list[Path]:
    """Unpack the regular files of ``deb`` whose paths match ``patterns`` (fnmatch, no leading
    ``./``) under ``out``, plus the package's copyright file; returns the matched files.

    ``pk3:ARCHIVE:INNER`` patterns unpack ARCHIVE (a zip, e.g. a game's .pk3) and then its
    members matching INNER. Done once: a marker file lists what a finished extraction wrote.
    """
    out = Path(out)
    done = out / ".extracted"
    if done.is_file():
        return [out / line for line in done.read_text().splitlines() if line]
    if out.exists():
        shutil.rmtree(out)  # an interrupted extraction starts over
    out.mkdir(parents=True)
    package = package or Path(deb).name.split("_", 1)[0]
    plain = [p for p in patterns if not p.startswith("pk3:")]
    zips = [p.split(":", 2)[1:] for p in patterns if p.startswith("pk3:")]
    want = plain + [z for z, _ in zips] + [f"usr/share/doc/{package}/copyright"]
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    matched: list[Path] = []
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if not m.isfile() or not _wanted(name, want):
                    continue
                dest = (out / name).resolve()
                if not str(dest).startswith(str(out.resolve()) + os.sep):
                    continue  # a member escaping the folder
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
                if _wanted(name, plain):
                    matched.append(dest)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait():
            raise CorpusError(f"dpkg-deb could not read {deb}: {err.strip()[-200:]}")
    for archive, inner in zips:
        zpath = out / archive
        if not zpath.is_file():
            continue
        zout = out / "pk3"
        with zipfile.ZipFile(zpath) as z:
            for n in z.namelist():
                if fnmatch.fnmatch(n, inner) and not n.endswith("/"):
                    dest = (zout / n).resolve()
                    if str(dest).startswith(str(zout.resolve()) + os.sep):
                        z.extract(n, zout)
                        matched.append(dest)
        zpath.unlink()  # the archive itself is not needed again
    rel = sorted(str(p.relative_to(out.resolve())) for p in matched)
    done.write_text("\n".join(rel) + "\n")
    return [out / r for r in rel]


def copyright_file(out: Path, package: str) -> Path | None:
    p = Path(out) / "usr/share/doc" / package / "copyright"
    return p if p.is_file() else None


def licenses_of(text: str) -> list[str]:
    """The distinct licence names of a machine-readable (DEP-5) copyright file, in order of
    appearance, leaving out the one that covers only ``debian/*`` packaging files."""
    names: list[str] = []
    debian_only = set()
    stanzas = re.split(r"\n\s*\n", text)
    for st in stanzas:
        files = re.search(r"^Files:\s*(.+)$", st, re.M)
        lic = re.search(r"^License:\s*(\S.*)$", st, re.M)
        if not lic:
            continue
        name = lic.group(1).strip()
        if files and files.group(1).strip().startswith("debian/"):
            debian_only.add(name)
            continue
        if name not in names:
            names.append(name)
    return names or sorted(debian_only)


def licenses_for(text: str, paths: list[str]) -> list[str]:
    """The licences that a DEP-5 copyright file gives to ``paths`` (installed paths such as
    ``usr/share/games/x/music/a.ogg``): for each path the last stanza whose ``Files`` pattern
    matches it (patterns name the source tree, so a pattern may match a path's tail, also
    without its top folder); ``debian/*`` stanzas never apply.
    [] when the file is not machine-readable."""
    stanzas = []
    for st in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*((?:.+\n?)(?:[ \t]+.+\n?)*)", st, re.M)
        lic = re.search(r"^License:\s*(\S.*)$", st, re.M)
        if files and lic:
            stanzas.append((files.group(1).split(), lic.group(1).strip()))
    def matches(path: str, pat: str) -> bool:
        if pat.startswith("debian/"):
            return False
        # installs often rename the top folder (data/audio/x -> usr/share/games/g/audio/x)
        tails = [pat] + ([pat.split("/", 1)[1]] if pat.count("/") >= 2 else [])
        return fnmatch.fnmatch(path, pat) or any(fnmatch.fnmatch(path, "*/" + t) for t in tails)

    out: list[str] = []
    for path in paths:
        hit = None
        for pats, name in stanzas:
            if any(matches(path, p) for p in pats):
                hit = name
        if hit and hit not in out:
            out.append(hit)
    return out
